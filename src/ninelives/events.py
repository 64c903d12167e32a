"""State changes of a node, published as events: what changed, from what to what, and why.

Every change of a server's shown state (``up -> down``), of a pool's state (``up ->
backup`` when it fails over to a later tier) and of a listener (bound, closed) is one
:class:`Event`. The :class:`EventLog` logs each one, keeps the most recent in memory for
``GET /v1/events`` and hands each to its subscribers (the uptime store records them).

Logging is the one part with a budget: at most :data:`LOG_PER_SECOND` events a second are
logged, and the number left out is logged with the next line that is. A log line costs
the event loop about 30 us, so thousands of transitions a second (a pool of hundreds of
flapping servers) would otherwise cost the data plane a third of its throughput in log
lines nobody reads; the uptime store still records every one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

log = logging.getLogger("ninelives.events")

Kind = Literal["server", "pool", "listener", "node"]
KEEP = 1000  # events kept in memory for the API; the uptime store keeps them all
LOG_PER_SECOND = 100  # events logged in one second of the clock at most


@dataclass(frozen=True, slots=True)
class Event:
    id: int  # increasing within one run of a node
    time: float  # seconds since the epoch
    kind: Kind
    entity: str  # "app/a1" for a server, "app" for a pool, "web" for a listener
    old: str
    new: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# A frozen dataclass's __init__ sets each field with object.__setattr__ (its own
# __setattr__ refuses), which looks the name up and goes through a wrapper every time:
# about a third of what publishing an event costs the event loop, which a pool of flapping
# servers does thousands of times a second. publish() sets the slots through their
# descriptors instead: the same object, made in about half the instructions.
_new_object = object.__new__
(_set_id, _set_time, _set_kind, _set_entity, _set_old, _set_new,
 _set_reason) = (getattr(Event, f.name).__set__ for f in fields(Event))


def _event(id: int, time: float, kind: str, entity: str, old: str, new: str,
           reason: str) -> Event:
    event: Event = _new_object(Event)
    _set_id(event, id)
    _set_time(event, time)
    _set_kind(event, kind)
    _set_entity(event, entity)
    _set_old(event, old)
    _set_new(event, new)
    _set_reason(event, reason)
    return event


@dataclass(slots=True)
class LogBudget:
    """Which events are logged: the first ``per_second`` of each second of the clock."""

    per_second: int = LOG_PER_SECOND
    second: float = -1.0  # the second being counted
    used: int = 0  # events logged in it
    skipped: int = 0  # events not logged since the last one that was

    def spent(self, now: float) -> bool:
        """The budget of ``now``'s second is used up: a quick test for the common case of
        a flood, before :meth:`admit`."""
        return self.used >= self.per_second and self.second <= now < self.second + 1.0

    def admit(self, now: float) -> int | None:
        """None: leave this event out of the log. Else log it, after saying that this many
        events were left out before it."""
        second = now // 1
        if second != self.second:
            self.second, self.used = second, 0
        if self.used >= self.per_second:
            self.skipped += 1
            return None
        self.used += 1
        skipped, self.skipped = self.skipped, 0
        return skipped


class EventLog:
    """Publishes events: logs them (within a budget), keeps the last :data:`KEEP`, tells
    subscribers."""

    def __init__(
        self, clock: Callable[[], float] = time.time, keep: int = KEEP
    ) -> None:
        self.clock = clock
        self.recent: deque[Event] = deque(maxlen=keep)
        self.last_id = 0
        self.subscribers: list[Callable[[Event], None]] = []
        self.log_budget = LogBudget()

    def publish(self, kind: Kind, entity: str, old: str, new: str, reason: str) -> Event:
        self.last_id += 1
        now = self.clock()
        event = _event(self.last_id, now, kind, entity, old, new, reason)
        self.recent.append(event)
        budget = self.log_budget
        if budget.spent(now):
            budget.skipped += 1
            skipped = None
        else:
            skipped = budget.admit(now)
        if skipped is not None:
            if skipped:
                log.warning("%d events not logged (more than %d a second); all are in the "
                            "uptime history", skipped, self.log_budget.per_second)
            log.info(
                "%s %s: %s -> %s (%s)", kind, entity, old, new, reason,
                extra={"kind": kind, "entity": entity, "old": old, "new": new,
                       "reason": reason},
            )
        for subscriber in self.subscribers:
            try:
                subscriber(event)
            except Exception:  # one broken subscriber must not stop the others or the caller
                log.exception("event subscriber %r failed on event %d", subscriber, event.id)
        return event

    def since(self, after: int = 0, limit: int = KEEP) -> list[Event]:
        """Events with an id above ``after``, oldest first, at most ``limit``."""
        out = [event for event in self.recent if event.id > after]
        return out[:limit]
