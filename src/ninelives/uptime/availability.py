"""Availability from recorded intervals: uptime, downtime, incidents, MTBF/MTTR, nines.

Pure functions over immutable values; the caller passes ``now`` (the clock) and the window,
so a 30-day window is computed in milliseconds in a test.

Every state of an entity falls in one class (:func:`state_class`):

- ``up``: in service (a server ``up`` or ``falling``, a pool ``up`` or on ``backup``, a
  listener ``listening``, a node ``up``);
- ``down``: not in service, against the operator's will (``down``, ``rising``, ``ejected``;
  a pool with no server; a listener or node while the node was not running);
- ``planned``: out of service because an operator said so (``drain``, ``maint``): neither up
  nor down, reported apart;
- ``unknown``: not observed (``unchecked``, a removed entity, time no interval covers, such
  as a server's state while its node was not running). Neither up nor down.

Availability is up / (up + down) over the window, after time inside maintenance windows
is taken out (and reported apart). An incident is one unbroken run of down time, from the
transition that began it (its reason is the cause) to the one that ended it.

Entities made of others combine timelines (:func:`combine`): a listener is in series with
its pool (both must be up), a provider's servers are in parallel (one up is enough).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ninelives.uptime.maintenance import Span

Class = Literal["up", "down", "planned", "unknown"]

# What each shown state means for availability, by kind of entity (see the module doc).
CLASSES: dict[str, dict[str, Class]] = {
    "server": {
        "up": "up", "falling": "up",
        "down": "down", "rising": "down", "ejected": "down",
        "drain": "planned", "maint": "planned",
        "unchecked": "unknown",
    },
    "pool": {"up": "up", "backup": "up", "down": "down", "unchecked": "unknown",
             "removed": "unknown"},
    "listener": {"listening": "up", "down": "down", "closed": "unknown"},
    "node": {"up": "up", "down": "down"},
}


def state_class(kind: str, state: str) -> Class:
    """The class of ``state`` for an entity of ``kind``; a state not known here is unknown."""
    return CLASSES.get(kind, {}).get(state, "unknown")


@dataclass(frozen=True, slots=True)
class Interval:
    """One stored interval of an entity in one state. ``end`` None: it still holds."""

    state: str
    start: float
    end: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a timeline: ``[start, end)`` in one class, with the state and the reason
    of the transition that began it."""

    start: float
    end: float
    cls: Class
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class Incident:
    start: float
    end: float | None  # None: still down
    cause: str  # the reason of the transition that began it
    state: str  # the state it began with (down, ejected, ...)
    downtime_s: float  # inside the window, outside maintenance

    def duration_s(self, now: float) -> float:
        return (self.end if self.end is not None else now) - self.start


@dataclass(frozen=True, slots=True)
class Availability:
    """What happened to one entity over ``[start, end)``; times in seconds."""

    start: float
    end: float
    up_s: float
    down_s: float  # outside maintenance windows
    planned_s: float  # drain, maint (outside maintenance windows)
    maintenance_s: float  # observed time inside maintenance windows
    maintenance_down_s: float  # of which down: not counted against availability
    incidents: tuple[Incident, ...]

    @property
    def window_s(self) -> float:
        return self.end - self.start

    @property
    def observed_s(self) -> float:
        return self.up_s + self.down_s

    @property
    def unobserved_s(self) -> float:
        seen = self.up_s + self.down_s + self.planned_s + self.maintenance_s
        return max(0.0, self.window_s - seen)

    @property
    def availability(self) -> float | None:
        """up / (up + down); None when the entity was never seen up or down."""
        observed = self.observed_s
        return self.up_s / observed if observed > 0 else None

    @property
    def mtbf_s(self) -> float | None:
        """Mean time between failures observed: up time per incident."""
        return self.up_s / len(self.incidents) if self.incidents else None

    @property
    def mttr_s(self) -> float | None:
        """Mean time to repair observed: down time per incident."""
        return self.down_s / len(self.incidents) if self.incidents else None


def timeline(kind: str, intervals: Iterable[Interval], now: float) -> list[Segment]:
    """An entity's intervals as classified segments in time order; open ones end ``now``.
    Unknown time is left out: a gap in a timeline means "not observed"."""
    out: list[Segment] = []
    for interval in sorted(intervals, key=lambda i: i.start):
        end = interval.end if interval.end is not None else now
        cls = state_class(kind, interval.state)
        if end > interval.start and cls != "unknown":
            out.append(Segment(interval.start, end, cls, interval.state, interval.reason))
    return out


def relabel(segments: Iterable[Segment], prefix: str) -> list[Segment]:
    """The same segments with ``prefix`` before each reason (``"pool app: "``), so that a
    combined entity's cause says which part failed."""
    return [
        Segment(s.start, s.end, s.cls, s.state, prefix + s.reason) for s in segments
    ]


def _series(up: int, down: int, planned: int, parts: int) -> Class:
    if down:
        return "down"  # one part down takes the whole down
    if up + planned < parts:
        return "unknown"  # a part not observed: the whole cannot be known
    return "planned" if planned else "up"


def _parallel(up: int, down: int, planned: int, parts: int) -> Class:
    if up:
        return "up"  # one part up keeps the whole up
    if down:
        return "down"
    return "planned" if planned else "unknown"


def combine(
    timelines: Sequence[Sequence[Segment]], mode: Literal["series", "parallel"]
) -> list[Segment]:
    """One timeline from several: in ``series`` the whole is up only while every part is,
    in ``parallel`` while any part is. The reason of a combined segment is that of the
    part that last entered the combined class: in series the first part to fail, in
    parallel the last one (the failure that took the whole down)."""
    if len(timelines) == 1:
        return list(timelines[0])
    decide = _series if mode == "series" else _parallel
    parts = len(timelines)
    # (time, 0 = a segment ends / 1 = begins, segment); ends first at the same instant.
    points = sorted(
        ((t, edge, s) for tl in timelines for s in tl for t, edge in ((s.start, 1), (s.end, 0))),
        key=lambda p: (p[0], p[1]),
    )
    counts = {"up": 0, "down": 0, "planned": 0}
    reasons = {"up": "", "down": "", "planned": ""}
    out: list[Segment] = []
    i, total = 0, len(points)
    previous: float | None = None
    while i < total:
        moment = points[i][0]
        if previous is not None and moment > previous:
            cls = decide(counts["up"], counts["down"], counts["planned"], parts)
            if cls != "unknown":
                _append(out, Segment(previous, moment, cls, cls, reasons[cls]))
        while i < total and points[i][0] == moment:
            _, edge, segment = points[i]
            if edge:
                counts[segment.cls] += 1
                reasons[segment.cls] = segment.reason
            else:
                counts[segment.cls] -= 1
            i += 1
        previous = moment
    return out


def _append(out: list[Segment], segment: Segment) -> None:
    last = out[-1] if out else None
    if (
        last is not None and last.end == segment.start and last.cls == segment.cls
        and last.reason == segment.reason
    ):
        out[-1] = Segment(last.start, segment.end, last.cls, last.state, last.reason)
    else:
        out.append(segment)


def summarise(
    segments: Sequence[Segment], maintenance: Sequence[Span], start: float, end: float,
    now: float,
) -> Availability:
    """Account ``segments`` (one timeline, in time order) over ``[start, end)``.

    Time inside ``maintenance`` spans (sorted, merged) counts as maintenance whatever the
    state. An incident is found on the whole timeline (so an outage that began before the
    window keeps its start and cause) and kept when some of its down time falls inside the
    window and outside maintenance: an outage entirely inside planned maintenance is not
    an incident; one that outlasts the window is, with the down time after it.
    """
    totals = {"up": 0.0, "down": 0.0, "planned": 0.0}
    in_maintenance = 0.0
    maintenance_down = 0.0
    incidents: list[Incident] = []
    run: list[Segment] = []  # the current unbroken run of down segments
    run_downtime = 0.0
    first_span = 0  # maintenance spans before this one end before the current segment
    for segment in segments:
        if run and (segment.cls != "down" or segment.start != run[-1].end):
            _close(run, run_downtime, now, incidents)
            run, run_downtime = [], 0.0
        lo, hi = max(segment.start, start), min(segment.end, end)
        inside = 0.0
        if lo < hi:
            while first_span < len(maintenance) and maintenance[first_span][1] <= lo:
                first_span += 1
            k = first_span
            while k < len(maintenance) and maintenance[k][0] < hi:
                inside += min(hi, maintenance[k][1]) - max(lo, maintenance[k][0])
                k += 1
            outside = (hi - lo) - inside
            in_maintenance += inside
            if segment.cls == "down":
                maintenance_down += inside
            totals[segment.cls] += outside
        else:
            outside = 0.0
        if segment.cls == "down":
            run.append(segment)
            run_downtime += outside
    if run:
        _close(run, run_downtime, now, incidents)
    return Availability(
        start=start, end=end, up_s=totals["up"], down_s=totals["down"],
        planned_s=totals["planned"], maintenance_s=in_maintenance,
        maintenance_down_s=maintenance_down, incidents=tuple(incidents),
    )


def _close(run: list[Segment], downtime: float, now: float, into: list[Incident]) -> None:
    if downtime <= 0:
        return  # outside the window, or planned maintenance only
    last_end = run[-1].end
    into.append(Incident(
        start=run[0].start, end=None if last_end >= now else last_end,
        cause=run[0].reason, state=run[0].state, downtime_s=downtime,
    ))
