"""The uptime report: availability of every entity of a node over a window, as JSON.

:func:`build_report` is pure (rows and a topology in, a dict out); :func:`uptime_report`
reads the store for it and is what ``GET /v1/uptime`` runs in a worker thread.

Entities, and what their timeline is:

- ``node``: the node itself, up while it runs (its gaps are recorded as down);
- ``cluster`` (with a ``cluster:`` section): up while this node serves, or while it did
  not run but another node of the cluster served (``elsewhere``);
- ``listener``: in series with its pool (a client is served only while the node runs, the
  listener is bound and its pool has a server), so its cause says which part failed;
- ``pool``: up while it has an available server (``backup`` counts as up);
- ``provider``: a pool's servers with that provider label in parallel (up while one is);
- ``server``: its own states.

The listener's pool and the provider's servers are those of the current config. Entities
that are in the history but not in the config any more are reported too, from their own
intervals, with ``"configured": false``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ninelives.units import describe_input, parse_duration
from ninelives.uptime.availability import (
    Availability,
    Interval,
    Segment,
    StoredInterval,
    combine,
    summarise,
    timeline,
)
from ninelives.uptime.maintenance import MaintenanceRule, spans_for
from ninelives.uptime.nines import nines
from ninelives.uptime.schema import Counts, Key

if TYPE_CHECKING:
    from ninelives.uptime.store import UptimeStore

DEFAULT_WINDOW = "30d"
KINDS = ("node", "cluster", "listener", "pool", "provider", "server")
CLUSTER = "cluster"  # the name of the cluster entity (one per node's history)
_YEARS_WEEKS = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(y|w)\s*")


@dataclass(frozen=True, slots=True)
class Topology:
    """What the node serves now: its name, listeners with their pool, pools with their
    servers and each server's provider. Taken on the event loop, used in a thread."""

    node: str
    listeners: tuple[tuple[str, str], ...]  # (listener, pool)
    pools: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (pool, ((server, provider)))
    clustered: bool = False  # a cluster: section: the cluster entity is reported

    def keys(self) -> set[Key]:
        out = {("node", self.node)}
        if self.clustered:
            out.add(("cluster", CLUSTER))
        out.update(("listener", name) for name, _ in self.listeners)
        for pool, servers in self.pools:
            out.add(("pool", pool))
            out.update(("server", f"{pool}/{server}") for server, _ in servers)
            out.update(("provider", f"{pool}/{provider}") for _, provider in servers)
        return out


def parse_window(text: str) -> float:
    """Seconds from ``1h``, ``24h``, ``7d``, ``30d``, ``2w``, ``1y`` (365 days)."""
    match = _YEARS_WEEKS.fullmatch(text)
    if match is not None:
        seconds = float(match.group(1)) * (365 if match.group(2) == "y" else 7) * 86_400
    else:
        try:
            seconds = parse_duration(text)
        except ValueError:
            raise ValueError(
                f"expected a window like 1h, 24h, 7d, 30d or 1y, got {describe_input(text)}"
            ) from None
    if seconds <= 0:
        raise ValueError(f"expected a window above 0, got {describe_input(text)}")
    return seconds


def parse_instant(text: str) -> float:
    """Seconds since the epoch from ISO 8601 (``2025-06-01``, ``2025-06-01T02:00:00Z``;
    UTC unless it says otherwise) or from a number of seconds since the epoch."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a time like 2025-06-01T02:00:00Z or seconds since the epoch, "
            f"got {describe_input(text)}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def window_from(params: Mapping[str, str], now: float) -> tuple[float, float]:
    """``window`` (ending now), or ``from`` and optionally ``to`` (default now)."""
    if "from" in params:
        if "window" in params:
            raise ValueError("expected window or from/to, not both")
        start = parse_instant(params["from"])
        end = parse_instant(params["to"]) if "to" in params else now
        if end <= start:
            raise ValueError("expected from before to")
        return start, min(end, now)
    if "to" in params:
        raise ValueError("expected from with to")
    return now - parse_window(params.get("window", DEFAULT_WINDOW)), now


def uptime_report(
    store: UptimeStore, topology: Topology, rules: Sequence[MaintenanceRule],
    start: float, end: float, now: float, kinds: Sequence[str] = KINDS,
) -> dict[str, Any]:
    """Read what the window needs from ``store`` and build the report (in a thread)."""
    intervals, requests = store.read(start, end, now)
    return build_report(topology, intervals, requests, rules, start, end, now, kinds)


def build_report(
    topology: Topology,
    intervals: Mapping[Key, Sequence[Interval | StoredInterval]],
    requests: Mapping[Key, Counts],
    rules: Sequence[MaintenanceRule],
    start: float,
    end: float,
    now: float,
    kinds: Sequence[str] = KINDS,
) -> dict[str, Any]:
    windows = [(rule, rule.spans(start, end)) for rule in rules]
    entities: list[dict[str, Any]] = []

    timelines: dict[Key, list[Segment]] = {}

    def own(kind: str, name: str) -> list[Segment]:
        found = timelines.get((kind, name))
        if found is None:
            found = timelines[kind, name] = timeline(kind, intervals.get((kind, name), ()), now)
        return found

    def add(kind: str, name: str, pool: str | None, segments: list[Segment],
            extra: dict[str, Any], configured: bool = True) -> None:
        if kind not in kinds:
            return
        maintenance = spans_for(windows, kind, extra.get("entity", name), pool)
        summary = summarise(segments, maintenance, start, end, now)
        entities.append(_entity(kind, name, summary, requests.get((kind, extra.get(
            "entity", name))), now, extra, configured))

    add("node", topology.node, None, own("node", topology.node), {})
    if topology.clustered:
        add("cluster", CLUSTER, None, own("cluster", CLUSTER), {})
    for listener, pool in topology.listeners:
        segments = combine(
            [("", own("listener", listener)), (f"pool {pool}: ", own("pool", pool))], "series"
        )
        add("listener", listener, pool, segments, {"pool": pool})
    for pool, _ in topology.pools:
        add("pool", pool, pool, own("pool", pool), {})
    for pool, servers in topology.pools:
        providers: dict[str, list[str]] = {}
        for server, provider in servers:
            providers.setdefault(provider, []).append(server)
        for provider, names in providers.items():
            parts = [(f"{s}: ", own("server", f"{pool}/{s}")) for s in names]
            add("provider", provider, pool, combine(parts, "parallel"),
                {"pool": pool, "entity": f"{pool}/{provider}", "servers": names})
    for pool, servers in topology.pools:
        for server, provider in servers:
            add("server", server, pool, own("server", f"{pool}/{server}"),
                {"pool": pool, "provider": provider, "entity": f"{pool}/{server}"})
    known = topology.keys()
    for kind, name in sorted(set(intervals) - known):
        if kind == "server":
            owner, _, shown = name.partition("/")
            add(kind, shown, owner, own(kind, name), {"pool": owner, "entity": name},
                configured=False)
        else:
            add(kind, name, name if kind == "pool" else None, own(kind, name), {},
                configured=False)
    return {
        "node": topology.node,
        "from": start,
        "to": end,
        "window_s": round(end - start, 3),
        "maintenance": [
            {"start": s, "end": e, "reason": rule.reason, "scope": _scope(rule)}
            for rule, spans in windows for s, e in spans
        ],
        "entities": entities,
    }


def _scope(rule: MaintenanceRule) -> str:
    return f"{rule.scope[0]} {rule.scope[1]}" if rule.scope else "all"


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _entity(
    kind: str, name: str, a: Availability, counts: Counts | None, now: float,
    extra: dict[str, Any], configured: bool,
) -> dict[str, Any]:
    availability = a.availability
    out: dict[str, Any] = {"kind": kind, "name": name}
    out.update((k, v) for k, v in extra.items() if k != "entity")
    if not configured:
        out["configured"] = False
    out.update({
        "availability": availability,
        "nines": None if availability is None else _finite(nines(availability)),
        "uptime_s": _seconds(a.up_s),
        "downtime_s": _seconds(a.down_s),
        "planned_s": _seconds(a.planned_s),
        "maintenance_s": _seconds(a.maintenance_s),
        "maintenance_downtime_s": _seconds(a.maintenance_down_s),
        "unobserved_s": _seconds(a.unobserved_s),
        "incident_count": len(a.incidents),
        "mtbf_s": _seconds(a.mtbf_s),
        "mttr_s": _seconds(a.mttr_s),
        "incidents": [
            {
                "start": begun,
                "end": ended,
                "duration_s": round((now if ended is None else ended) - begun, 3),
                "downtime_s": round(downtime, 3),
                "state": state,
                "cause": cause,
            }
            for begun, ended, cause, state, downtime in a.incidents
        ],
        "requests": _requests(counts),
    })
    return out


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 3)


def _requests(counts: Counts | None) -> dict[str, Any]:
    """Request-based availability: a request is bad when it got no response or a 5xx
    (a 4xx is the client's mistake and counts as served)."""
    total = sum(counts) if counts else 0
    bad = (counts[0] + counts[5]) if counts else 0
    return {
        "total": total,
        "good": total - bad,
        "bad": bad,
        "availability": (total - bad) / total if total else None,
    }
