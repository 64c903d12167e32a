"""One drill from first request to last: load on a listener, a fault in the middle, the
proxy's counters read all along. It knows nothing of ninelives itself, so the failover
benchmark runs the same scenario through HAProxy.

The load runs ``before`` seconds, then the fault is injected (the injector records when it
began and when the server was whole again), then the load goes on for ``after`` seconds,
or longer while the faulty server has not answered a request yet, up to ``back_within``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ninelives.drill.faults import FaultMarks
from ninelives.drill.load import Load, LoadSpec, Sample, clock
from ninelives.drill.observe import CounterReading, CounterWatch, ServerCounters

WATCH_TICK = 0.05  # seconds between two looks at whether the faulty server is back
DEADLINE_SLACK = 10.0  # seconds the load may outlive the planned phases (a slow restart)


@dataclass(frozen=True, slots=True)
class Timing:
    before: float = 2.0  # seconds of load before the fault
    after: float = 3.0  # seconds of load after the server is whole again
    back_within: float = 15.0  # at most this long after it, waiting for its first answer

    def __post_init__(self) -> None:
        if self.before <= 0 or self.after <= 0 or self.back_within < self.after:
            raise ValueError(f"phases need before > 0, after > 0, back_within >= after: {self}")


@dataclass
class Recording:
    """Everything a scenario saw, for :mod:`ninelives.drill.report` to make sense of."""

    server: str | None
    samples: list[Sample]
    marks: FaultMarks
    readings: list[CounterReading] = field(default_factory=list)
    counter_errors: int = 0
    load_started: float = 0.0
    load_ended: float = 0.0


Injector = Callable[[FaultMarks], Awaitable[None]]


def _back(samples: list[Sample], start: int, server: str, since: float) -> tuple[bool, int]:
    """Has ``server`` answered a request sent at ``since`` or later? Scans from ``start``;
    returns the answer and where to scan from next time."""
    for index in range(start, len(samples)):
        sample = samples[index]
        if sample.backend == server and sample.sent >= since:
            return True, index
    return False, len(samples)


async def record(
    spec: LoadSpec,
    timing: Timing,
    inject: Injector,
    fault_time: float,
    server: str | None = None,
    counters: ServerCounters | None = None,
) -> Recording:
    """Run the load, inject the fault after ``timing.before``, and record it all.

    ``fault_time`` is about how long ``inject`` takes; it only bounds the load's deadline.
    ``server`` is the faulty server's name (``X-Backend``), ``None`` for a fault of the
    proxy itself. ``counters`` are read for ``server`` while the load runs.
    """
    marks = FaultMarks()
    load = Load(spec)
    deadline = (
        clock() + timing.before + fault_time + timing.back_within + DEADLINE_SLACK
    )
    load_task = asyncio.create_task(load.run(deadline))
    watch = CounterWatch(counters, server) if counters is not None and server else None
    watch_task = asyncio.create_task(watch.run()) if watch is not None else None
    try:
        await asyncio.wait({load_task}, timeout=timing.before)
        if not load_task.done():
            await inject(marks)
            await _after(load, load_task, marks, timing, server)
    finally:
        load.stop.set()
        if watch is not None:
            watch.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await load_task
        if watch_task is not None:
            await watch_task
    return Recording(
        server=server,
        samples=load.samples,
        marks=marks,
        readings=watch.readings if watch is not None else [],
        counter_errors=watch.errors if watch is not None else 0,
        load_started=load.started,
        load_ended=clock(),
    )


async def _after(
    load: Load, load_task: asyncio.Task[list[Sample]], marks: FaultMarks, timing: Timing,
    server: str | None,
) -> None:
    whole = marks.ended if marks.ended is not None else clock()
    back = server is None or marks.ended is None
    scanned = 0
    while not load_task.done():
        now = clock()
        if not back:
            assert server is not None
            back, scanned = _back(load.samples, scanned, server, whole)
        if now >= whole + timing.back_within or (back and now >= whole + timing.after):
            return
        await asyncio.wait({load_task}, timeout=WATCH_TICK)
