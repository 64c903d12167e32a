"""The SLOs measured from the uptime store, and ``GET /v1/slo`` as JSON.

:func:`measure` is pure (rows in, SLIs out); :func:`slo_statuses` reads the store for it
and runs in a worker thread. A request-based SLI adds up the request buckets of its
listener or pool over each window (exact to 10 s for the last two hours, where the short
burn-rate windows are), less the requests inside its maintenance windows (read the same
way: exact to the finest buckets kept at that age, 10 s, 5 min, then an hour); a
time-based one accounts its timeline like ``GET /v1/uptime`` (a listener in series with
its pool), with planned maintenance taken out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ninelives.uptime.availability import Interval, Segment, StoredInterval, combine, summarise
from ninelives.uptime.availability import timeline as own_timeline
from ninelives.uptime.maintenance import MaintenanceRule, Span, spans_for
from ninelives.uptime.schema import Counts, Key
from ninelives.uptime.slo import Objective, Sli, SloStatus, evaluate

if TYPE_CHECKING:
    from ninelives.uptime.store import UptimeStore


def request_sli(counts: Counts | None, planned: Counts | None = None) -> Sli:
    """Good: answered, and not with a 5xx. Valid: every request, but those ``planned``
    (inside maintenance windows)."""
    if not counts:
        return Sli(0.0, 0.0)
    if planned:
        counts = without(counts, planned)
    total = float(sum(counts))
    return Sli(total - counts[0] - counts[5], total)


def without(counts: Counts, part: Counts) -> Counts:
    """``counts`` less ``part``, never below 0 (a window's edges are read at coarser
    buckets than a span's inside it may be)."""
    return tuple(max(0, c - p) for c, p in zip(counts, part, strict=True))  # type: ignore[return-value]


def entity_timeline(
    entity: tuple[str, str], listeners: Mapping[str, str],
    intervals: Mapping[Key, Sequence[Interval | StoredInterval]], now: float,
) -> list[Segment]:
    """A pool's own timeline; a listener's in series with its pool (as the report does)."""
    kind, name = entity
    mine = own_timeline(kind, intervals.get(entity, ()), now)
    pool = listeners.get(name) if kind == "listener" else None
    if pool is None:
        return mine
    theirs = own_timeline("pool", intervals.get(("pool", pool), ()), now)
    return combine([("", mine), (f"pool {pool}: ", theirs)], "series")


def maintenance_spans(
    objective: Objective, listeners: Mapping[str, str], rules: Sequence[MaintenanceRule],
    start: float, end: float,
) -> list[Span]:
    kind, name = objective.entity
    pool = listeners.get(name) if kind == "listener" else name
    windows = [(rule, rule.spans(start, end)) for rule in rules]
    return spans_for(windows, kind, name, pool)


def measure(
    objective: Objective,
    listeners: Mapping[str, str],
    intervals: Mapping[Key, Sequence[Interval | StoredInterval]],
    requests: Mapping[float, Mapping[Key, Counts]],
    rules: Sequence[MaintenanceRule],
    now: float,
    planned: Mapping[float, Counts] | None = None,
) -> SloStatus:
    """Evaluate ``objective`` at ``now``: ``requests`` has the counts over each of its
    windows (by window length), ``planned`` its entity's counts inside its maintenance
    windows within each, ``intervals`` every interval of its longest window."""
    windows = objective.windows()
    longest = max(windows)
    spans = maintenance_spans(objective, listeners, rules, now - longest, now)
    in_maintenance = any(start <= now < end for start, end in spans)
    measured: dict[float, Sli] = {}
    if objective.kind == "requests":
        for window in windows:
            measured[window] = request_sli(requests.get(window, {}).get(objective.entity),
                                           (planned or {}).get(window))
    else:
        segments = entity_timeline(objective.entity, listeners, intervals, now)
        for window in windows:
            summary = summarise(segments, spans, now - window, now, now)
            measured[window] = Sli(summary.up_s, summary.observed_s)
    return evaluate(objective, measured, now, in_maintenance)


def slo_statuses(
    store: UptimeStore, objectives: Sequence[Objective], listeners: Mapping[str, str],
    rules: Sequence[MaintenanceRule], now: float,
) -> list[SloStatus]:
    """Read what every objective needs and evaluate them (in a worker thread)."""
    if not objectives:
        return []
    windows = sorted({w for o in objectives if o.kind == "requests" for w in o.windows()})
    requests = {window: store.requests(now - window, now, now) for window in windows}
    timed = [o for o in objectives if o.kind == "time"]
    intervals = {}
    if timed:  # only the SLOs' listeners and pools (and a listener's pool)
        only = {o.entity for o in timed}
        only |= {("pool", listeners[n]) for k, n in only if k == "listener" and n in listeners}
        intervals = store.intervals(now - max(w for o in timed for w in o.windows()), now, only)
    return [measure(o, listeners, intervals, requests, rules, now,
                    planned_requests(store, o, listeners, rules, now) if o.kind == "requests"
                    else None)
            for o in objectives]


def planned_requests(
    store: UptimeStore, objective: Objective, listeners: Mapping[str, str],
    rules: Sequence[MaintenanceRule], now: float,
) -> dict[float, Counts]:
    """The requests of ``objective``'s entity inside its maintenance windows, within each
    of its windows (by window length); {} without maintenance. Reads the store."""
    windows = objective.windows()
    spans = maintenance_spans(objective, listeners, rules, now - max(windows), now)
    read: dict[Span, Counts] = {}
    out: dict[float, Counts] = {}
    for window in windows:
        total = [0] * 6
        for begin, end in spans:
            part = (max(begin, now - window), min(end, now))
            if part[1] <= part[0]:
                continue
            if part not in read:
                read[part] = store.requests(part[0], part[1], now).get(
                    objective.entity, (0, 0, 0, 0, 0, 0))
            for k, n in enumerate(read[part]):
                total[k] += n
        if any(total):
            out[window] = (total[0], total[1], total[2], total[3], total[4], total[5])
    return out


def _number(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def status_json(status: SloStatus) -> dict[str, Any]:
    o = status.objective
    return {
        "name": o.name,
        o.entity[0]: o.entity[1],
        "kind": o.kind,
        "target": o.target,
        "window_s": o.window_s,
        "sli": _number(status.sli.ratio),
        "good": _number(status.sli.good, 3),
        "valid": _number(status.sli.valid, 3),
        "met": status.met,
        "budget": {
            "total": _number(status.budget_total, 3),
            "spent": _number(status.budget_spent, 3),
            "left": _number(status.budget_left, 3),
            "left_ratio": _number(status.budget_left_ratio),
        },
        "burn_rates": [
            {"severity": b.severity, "long_s": b.long_s, "short_s": b.short_s,
             "factor": b.factor, "long": _number(b.long_rate), "short": _number(b.short_rate),
             "firing": b.firing, "reason": b.reason}
            for b in status.burns
        ],
        "alerts": [
            {"severity": severity, "state": "firing" if firing else "resolved",
             "reason": reason}
            for severity, firing, reason in status.alerts
        ],
    }


def slo_report(statuses: Sequence[SloStatus], now: float) -> dict[str, Any]:
    return {"at": now, "slos": [status_json(s) for s in statuses]}
