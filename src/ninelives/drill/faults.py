"""The faults a drill injects into one server, and the moments it injected them.

- ``kill``: SIGKILL; after ``duration`` the server is started again on its port (when
  the drill started it; a server that was already running stays dead).
- ``hang``: SIGSTOP for ``duration``, then SIGCONT. The kernel still accepts connections
  to a stopped process, so only an HTTP check or a response timeout notices it.
- ``slow``: every answer takes ``delay`` longer for ``duration``. A backend the drill
  started is told so at runtime (``POST /admin/delay``, see ``ninelives.demo_backend``);
  a running one known only by its pid is paused for ``delay`` out of every ``2 x delay``
  (SIGSTOP/SIGCONT), which delays the answers that fall into a pause.
- ``flap``: down and up ``flaps`` times within ``duration`` (half of each cycle down):
  killed and started again on its port, or, for a running one, SIGSTOP and SIGCONT.

Every fault ends with the server whole again (continued, restarted, no delay), also when
the drill is interrupted half-way.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

from ninelives.drill.load import clock

FaultKind = Literal["kill", "hang", "slow", "flap"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


class FaultTarget(Protocol):
    """The server a fault is injected into, known by its pid."""

    name: str
    restartable: bool  # can it be started again on its port?

    @property
    def pid(self) -> int: ...

    def signal(self, sig: signal.Signals) -> None: ...

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""

    async def restart(self) -> None:
        """Start it again on its port (only when ``restartable``)."""

    async def set_delay(self, seconds: float) -> bool:
        """Add latency to its answers; False when this target cannot be told to."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    kind: FaultKind
    duration: float = 3.0  # seconds the server is faulty
    delay: float = 0.2  # slow: seconds added to each answer
    flaps: int = 3  # flap: down/up cycles within duration

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.duration <= 0 or self.delay <= 0 or self.flaps < 1:
            raise ValueError(f"a fault needs a positive duration and delay and flaps >= 1: {self}")

    def describe(self) -> str:
        if self.kind == "slow":
            return f"slow (+{self.delay * 1000:g} ms for {self.duration:g}s)"
        if self.kind == "flap":
            return f"flap ({self.flaps} times in {self.duration:g}s)"
        return f"{self.kind} ({self.duration:g}s)"


@dataclass(frozen=True, slots=True)
class Action:
    at: float  # on the drill's clock (load.clock)
    what: str


@dataclass
class FaultMarks:
    """When the fault began and when the server was whole again (``None``: never, in this
    drill), with every action taken on the way."""

    started: float = 0.0
    ended: float | None = None
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, what: str) -> float:
        now = clock()
        self.actions.append(Action(now, what))
        return now


async def _pause_until(when: float) -> None:
    await asyncio.sleep(max(0.0, when - clock()))


async def inject(plan: FaultPlan, target: FaultTarget, marks: FaultMarks) -> None:
    """Inject ``plan`` into ``target`` now; fill in ``marks`` as it goes."""
    if plan.kind == "kill":
        await _kill(plan, target, marks)
    elif plan.kind == "hang":
        await _hang(plan, target, marks)
    elif plan.kind == "slow":
        await _slow(plan, target, marks)
    else:
        await _flap(plan, target, marks)


async def _kill(plan: FaultPlan, target: FaultTarget, marks: FaultMarks) -> None:
    pid = target.pid
    target.signal(signal.SIGKILL)
    marks.started = marks.note(f"SIGKILL {target.name} (pid {pid})")
    await target.kill()  # reaped: its port is free for the restart
    if not target.restartable:
        marks.notes.append(f"{target.name} was not started by the drill; it stays dead")
        return
    await _pause_until(marks.started + plan.duration)
    await target.restart()
    marks.ended = marks.note(f"{target.name} restarted (pid {target.pid})")


async def _hang(plan: FaultPlan, target: FaultTarget, marks: FaultMarks) -> None:
    target.signal(signal.SIGSTOP)
    marks.started = marks.note(f"SIGSTOP {target.name} (pid {target.pid})")
    try:
        await _pause_until(marks.started + plan.duration)
    finally:
        target.signal(signal.SIGCONT)
    marks.ended = marks.note(f"SIGCONT {target.name}")


async def _slow(plan: FaultPlan, target: FaultTarget, marks: FaultMarks) -> None:
    if await target.set_delay(plan.delay):
        marks.started = marks.note(f"{target.name}: +{plan.delay * 1000:g} ms per answer")
        try:
            await _pause_until(marks.started + plan.duration)
        finally:
            await target.set_delay(0.0)
        marks.ended = marks.note(f"{target.name}: no added latency")
        return
    marks.started = marks.note(
        f"{target.name} (pid {target.pid}) paused {plan.delay * 1000:g} ms in every "
        f"{2 * plan.delay * 1000:g} ms"
    )
    try:
        while clock() < marks.started + plan.duration:
            target.signal(signal.SIGSTOP)
            await asyncio.sleep(plan.delay)
            target.signal(signal.SIGCONT)
            await asyncio.sleep(plan.delay)
    finally:
        target.signal(signal.SIGCONT)
    marks.ended = marks.note(f"{target.name}: pauses over")


async def _flap(plan: FaultPlan, target: FaultTarget, marks: FaultMarks) -> None:
    half = plan.duration / (2 * plan.flaps)
    began = clock()
    try:
        for cycle in range(plan.flaps):
            await _pause_until(began + 2 * cycle * half)
            if target.restartable:
                pid = target.pid
                target.signal(signal.SIGKILL)
                at = marks.note(f"SIGKILL {target.name} (pid {pid})")
                await target.kill()  # reaped: its port is free for the restart
            else:
                target.signal(signal.SIGSTOP)
                at = marks.note(f"SIGSTOP {target.name} (pid {target.pid})")
            if cycle == 0:
                marks.started = at
            await _pause_until(began + (2 * cycle + 1) * half)
            if target.restartable:
                await target.restart()
                marks.ended = marks.note(f"{target.name} restarted (pid {target.pid})")
            else:
                target.signal(signal.SIGCONT)
                marks.ended = marks.note(f"SIGCONT {target.name}")
    finally:
        if not target.restartable:
            target.signal(signal.SIGCONT)
