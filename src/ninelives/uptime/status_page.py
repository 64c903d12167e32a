"""``GET /status``: the node's status page, one server-rendered HTML document.

No script, no stylesheet or font from elsewhere: the page works from an air-gapped
network, in a text browser, and with JavaScript off. Per listener and pool it shows the
current state, the availability over 24 h, 30 d and 90 d, a 90-day bar of daily uptime
(inline SVG, one rectangle per UTC day coloured by its availability, its ``<title>`` the
tooltip), then the SLOs with their budget left, the recent incidents and the planned
maintenance, then the live tables of listeners and servers.

:func:`uptime_view` is pure (intervals in, a :class:`UptimeView` out) and runs in a worker
thread with the store's read; :func:`render_status_page` is pure too (values in, HTML out).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ninelives.units import format_duration
from ninelives.uptime.availability import Incident, StoredInterval, summarise
from ninelives.uptime.maintenance import MaintenanceRule, spans_for
from ninelives.uptime.nines import format_percent
from ninelives.uptime.schema import Key
from ninelives.uptime.slo import SloStatus
from ninelives.uptime.slo_report import entity_timeline

DAY = 86_400.0
DAYS = 90  # days in the bar
PERIODS = (("24h", DAY), ("30d", 30 * DAY), ("90d", 90 * DAY))
RECENT_INCIDENTS = 20
MAINTENANCE_AHEAD = 14 * DAY  # planned windows shown: the current one and the next two weeks
REFRESH = 30  # seconds between reloads of the page (each reads 90 days of history)


@dataclass(frozen=True, slots=True)
class EntityView:
    kind: str  # listener or pool
    name: str
    pool: str | None  # a listener's pool
    availability: tuple[float | None, ...]  # over each of PERIODS
    days: tuple[tuple[float, float | None, float], ...]  # (day start, availability, down_s)


@dataclass(frozen=True, slots=True)
class UptimeView:
    at: float
    entities: tuple[EntityView, ...]
    incidents: tuple[tuple[str, Incident], ...]  # (label, incident), latest first
    maintenance: tuple[tuple[float, float, str, str], ...]  # (start, end, reason, scope)


def uptime_view(
    listeners: Mapping[str, str], pools: Sequence[str],
    intervals: Mapping[Key, Sequence[StoredInterval]], rules: Sequence[MaintenanceRule],
    now: float,
) -> UptimeView:
    """The uptime of every listener (in series with its pool) and pool, from the intervals
    of the last 90 days (and a bit: the first day of the bar starts at a UTC midnight)."""
    today = now // DAY * DAY
    first_day = today - (DAYS - 1) * DAY
    start = min(first_day, now - PERIODS[-1][1])
    windows = [(rule, rule.spans(start, now + MAINTENANCE_AHEAD)) for rule in rules]
    entities: list[EntityView] = []
    incidents: list[tuple[str, Incident]] = []
    subjects = [("listener", name, pool) for name, pool in listeners.items()]
    subjects += [("pool", name, name) for name in pools]
    for kind, name, pool in subjects:
        segments = entity_timeline((kind, name), listeners, intervals, now)
        spans = spans_for(windows, kind, name, pool)
        availability = tuple(
            summarise(segments, spans, now - length, now, now).availability
            for _, length in PERIODS
        )
        days = []
        for k in range(DAYS):
            day = first_day + k * DAY
            summary = summarise(segments, spans, day, min(day + DAY, now), now)
            days.append((day, summary.availability, summary.down_s))
        entities.append(EntityView(kind, name, pool if kind == "listener" else None,
                                   availability, tuple(days)))
        whole = summarise(segments, spans, start, now, now)
        incidents += [(f"{kind} {name}", incident) for incident in whole.incidents]
    incidents.sort(key=lambda item: -item[1].start)
    maintenance = sorted(
        (s, e, rule.reason, f"{rule.scope[0]} {rule.scope[1]}" if rule.scope else "all")
        for rule, spans in windows for s, e in spans if e > now - DAY
    )
    return UptimeView(now, tuple(entities), tuple(incidents[:RECENT_INCIDENTS]),
                      tuple(maintenance))


# -- HTML ----------------------------------------------------------------------------------------

_BADGE = {
    "up": "#1a7f37", "listening": "#1a7f37", "down": "#cf222e", "drain": "#bf8700",
    "maint": "#6e7781", "falling": "#bc4c00", "rising": "#0969da", "ejected": "#a40e26",
    "unchecked": "#6e7781", "backup": "#bf8700", "ok": "#1a7f37",
}
_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#1f2328;max-width:80em}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{padding:.25em .8em;border-bottom:1px solid #d0d7de;text-align:left}"
    "td.n{text-align:right}.b{color:#fff;border-radius:.8em;padding:.1em .6em}"
    "section.entity{margin:1em 0 1.5em}.entity h3{margin:.2em 0}"
    ".avail{color:#57606a;margin:.2em 0}svg.bar{display:block;max-width:100%;height:auto}"
    ".legend{font-size:12px;color:#57606a}"
)


@dataclass(frozen=True, slots=True)
class _Raw:
    markup: str  # already escaped


def _esc(value: object) -> str:
    return html.escape(str(value))


def _row(cells: Sequence[object], header: bool = False) -> str:
    tag = "th" if header else "td"
    out = []
    for cell in cells:
        if isinstance(cell, int) and not isinstance(cell, bool):
            out.append(f'<{tag} class="n">{cell}</{tag}>')
        elif isinstance(cell, _Raw):
            out.append(f"<{tag}>{cell.markup}</{tag}>")
        else:
            out.append(f"<{tag}>{_esc(cell)}</{tag}>")
    return "<tr>" + "".join(out) + "</tr>"


def _badge(state: str) -> _Raw:
    colour = _BADGE.get(state, "#6e7781")
    return _Raw(f'<span class="b" style="background:{colour}">{_esc(state)}</span>')


def colour(availability: float | None) -> str:
    """A day's colour: grey not observed, green at 99.95% or more, then yellow (99%),
    orange (95%) and red."""
    if availability is None:
        return "#c9d1d9"
    if availability >= 0.9995:
        return "#2da44e"
    if availability >= 0.99:
        return "#d4a72c"
    if availability >= 0.95:
        return "#fb8500"
    return "#cf222e"


def _day(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")


def _when(moment: float | None) -> str:
    if moment is None:
        return "ongoing"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _percent(value: float | None) -> str:
    return "no data" if value is None else format_percent(value)


def day_bar(entity: EntityView) -> str:
    """90 rectangles, oldest on the left, each with its day, availability and downtime."""
    width, gap, height = 6, 2, 30
    rects = []
    for k, (day, availability, down) in enumerate(entity.days):
        detail = "no data" if availability is None else (
            f"{format_percent(availability)} up, {format_duration(round(down, 1))} down")
        rects.append(
            f'<rect class="day" x="{k * (width + gap)}" y="0" width="{width}" '
            f'height="{height}" rx="1" fill="{colour(availability)}">'
            f"<title>{_day(day)}: {_esc(detail)}</title></rect>"
        )
    total = len(entity.days) * (width + gap) - gap
    label = f"daily uptime of {entity.kind} {entity.name}, last {len(entity.days)} days"
    return (f'<svg class="bar" xmlns="http://www.w3.org/2000/svg" width="{total}" '
            f'height="{height}" viewBox="0 0 {total} {height}" role="img" '
            f'aria-label="{_esc(label)}">' + "".join(rects) + "</svg>")


def _uptime_sections(
    view: UptimeView, states: Mapping[Key, str], slos: Sequence[SloStatus]
) -> list[str]:
    parts = ["<h2>Uptime</h2>"]
    for entity in view.entities:
        state = states.get((entity.kind, entity.name), "unknown")
        of = f" (pool {_esc(entity.pool)})" if entity.pool else ""
        periods = ", ".join(f"{label} {_percent(a)}"
                            for (label, _), a in zip(PERIODS, entity.availability, strict=True))
        parts += [
            f'<section class="entity" id="{_esc(entity.kind)}-{_esc(entity.name)}">',
            f"<h3>{_esc(entity.kind.capitalize())} {_esc(entity.name)}{of} "
            f"{_badge(state).markup}</h3>",
            f'<p class="avail">{_esc(periods)}</p>',
            day_bar(entity),
            f'<p class="legend">{_day(entity.days[0][0])} to {_day(entity.days[-1][0])} '
            "(UTC days); green 99.95% or more, yellow 99%, orange 95%, red below, grey no "
            "data</p></section>",
        ]
    parts += ["<h2>SLOs</h2>"]
    if slos:
        parts += ['<table class="slos">', _row(
            ("SLO", "of", "target", "window", "SLI", "budget left", "alerts"), True)]
        for s in slos:
            o = s.objective
            left = s.budget_left_ratio
            firing = [severity for severity, on, _ in s.alerts if on]
            parts.append(_row((
                o.name, f"{o.entity[0]} {o.entity[1]} ({o.kind})", format_percent(o.target),
                format_duration(o.window_s), _percent(s.sli.ratio),
                "no data" if left is None else format_percent(left) if left >= 0
                else f"overspent ({format_percent(-left)} over)",
                _badge(", ".join(firing) + " firing") if firing else _badge("ok"),
            )).replace("<tr>", '<tr class="slo">', 1))
        parts.append("</table>")
    else:
        parts.append("<p>No SLO configured (uptime.slos).</p>")
    parts += ["<h2>Recent incidents</h2>"]
    if view.incidents:
        parts += ['<table class="incidents">',
                  _row(("of", "start", "end", "duration", "cause"), True)]
        for label, incident in view.incidents:
            parts.append(_row((
                label, _when(incident.start), _when(incident.end),
                format_duration(round(incident.duration_s(view.at), 1)), incident.cause,
            )))
        parts.append("</table>")
    else:
        parts.append("<p>No incident in the last 90 days.</p>")
    parts += ["<h2>Planned maintenance</h2>"]
    if view.maintenance:
        parts += ['<table class="maintenance">', _row(("start", "end", "of", "reason"), True)]
        for start, end, reason, scope in view.maintenance:
            parts.append(_row((_when(start), _when(end), scope, reason)))
        parts.append("</table>")
    else:
        parts.append("<p>None planned.</p>")
    return parts


def render_status_page(
    status: dict[str, Any], view: UptimeView | None = None, slos: Sequence[SloStatus] = (),
    problem: str = "",
) -> str:
    """The node's status (and its uptime, when kept) as one HTML page."""
    node = _esc(status.get("node", ""))
    ready = "ready" if status.get("ready") else "not ready"
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f'<meta http-equiv="refresh" content="{REFRESH}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ninelives {node}</title><style>{_STYLE}</style></head><body>",
        f"<h1>ninelives {node}</h1>",
        f"<p>version {_esc(status.get('version', ''))}, "
        f"up {int(status.get('uptime_s', 0))} s, {ready}</p>",
    ]
    states: dict[Key, str] = {}
    for lis in status.get("listeners", []):
        states["listener", str(lis.get("name"))] = str(lis.get("state", "listening"))
    for pool in status.get("pools", []):
        states["pool", str(pool.get("name"))] = str(pool.get("state", ""))
    if view is not None:
        parts += _uptime_sections(view, states, slos)
    else:
        parts.append(f"<p>Uptime history not shown: {_esc(problem or 'not kept')}.</p>")
    parts += [
        "<h2>Listeners</h2><table>",
        _row(("name", "protocol", "addresses", "pool", "active", "requests", "5xx"), True),
    ]
    for lis in status.get("listeners", []):
        parts.append(_row((
            lis.get("name", ""), lis.get("protocol", ""), " ".join(lis.get("addresses", [])),
            lis.get("pool", ""), lis.get("active", 0), lis.get("requests", 0),
            lis.get("responses", {}).get("5xx", 0),
        )))
    parts.append("</table>")
    for pool in status.get("pools", []):
        tier = pool.get("active_tier")
        parts += [
            f"<h2>Pool {_esc(pool.get('name', ''))} "
            f"{_badge(str(pool.get('state', ''))).markup}</h2>",
            f"<p>{_esc(pool.get('reason', ''))}; {_esc(pool.get('balance', ''))}, "
            f"{pool.get('available', 0)} available, active tier "
            f"{'none' if tier is None else tier}</p><table>",
            _row(("tier", "provider", "server", "address", "state", "weight", "active",
                  "requests", "reason"), True),
        ]
        for index, group in enumerate(pool.get("tiers", [])):
            for srv in group.get("servers", []):
                parts.append(_row((
                    index, group.get("provider", ""), srv.get("name", ""),
                    srv.get("address", ""), _badge(str(srv.get("state", ""))),
                    srv.get("weight", 0), srv.get("active", 0), srv.get("requests", 0),
                    srv.get("reason", ""),
                )))
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
