"""State changes of a node, published as events: what changed, from what to what, and why.

Every change of a server's shown state (``up -> down``), of a pool's state (``up ->
backup`` when it fails over to a later tier) and of a listener (bound, closed) is one
:class:`Event`. The :class:`EventLog` logs each one, keeps the most recent in memory for
``GET /v1/events``, hands each to the subscribers of its kind and appends it to the
journals (the uptime store's).

Publishing is on the event loop, and a pool of hundreds of flapping servers publishes
thousands of events a second, so it is made cheap (this module is compiled with mypyc, see
``setup.py``):

- the log keeps each event as a plain tuple, and an :class:`Event` is made only for a
  subscriber of its kind or when the API asks (:meth:`EventLog.since`);
- a subscriber names the kinds it wants (the SLO watch no server's), so an event costs
  nothing for those that would only look at its kind and return;
- a journal is a compiled function given each event's fields (the uptime store's
  :meth:`~ninelives.uptime.journal.Journal.event`, about 1,800 instructions);
- logging has a budget: at most :data:`LOG_PER_SECOND` events a second are logged, and the
  number left out is logged with the next line that is. A log line costs the event loop
  about 30 us; the uptime store still records every event.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

log = logging.getLogger("ninelives.events")

Kind = Literal["server", "pool", "listener", "node"]
KINDS: tuple[Kind, ...] = ("server", "pool", "listener", "node")
KEEP = 1000  # events kept in memory for the API; the uptime store keeps them all
LOG_PER_SECOND = 100  # events logged in one second of the clock at most

# An event as the log keeps it: (id, time, kind, entity, old, new, reason).
Record = tuple[int, float, str, str, str, str, str]
Subscriber = Callable[["Event"], None]
# Takes (time, kind, entity, old, new, reason); must neither block nor raise.
JournalFn = Callable[[float, str, str, str, str, str], object]


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


def event_of(record: Record) -> Event:
    id, at, kind, entity, old, new, reason = record
    return Event(id, at, kind, entity, old, new, reason)  # type: ignore[arg-type]


class LogBudget:
    """Which events are logged: the first ``per_second`` of each second of the clock."""

    def __init__(self, per_second: int = LOG_PER_SECOND) -> None:
        self.per_second = per_second
        self.second = -1.0  # the second being counted
        self.used = 0  # events logged in it
        self.skipped = 0  # events not logged since the last one that was

    def admit(self, now: float) -> int | None:
        """None: leave this event out of the log. Else log it, after saying that this many
        events were left out before it."""
        if self.used >= self.per_second and self.second <= now < self.second + 1.0:
            self.skipped += 1  # the common case of a flood: this second's budget is spent
            return None
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
    the subscribers of their kind, appends them to the journals."""

    def __init__(
        self, clock: Callable[[], float] = time.time, keep: int = KEEP
    ) -> None:
        self.clock = clock
        self.recent: deque[Record] = deque(maxlen=keep)
        self.last_id = 0
        self.log_budget = LogBudget()
        self.journals: list[JournalFn] = []
        self._subscribers: dict[str, list[Subscriber]] = {kind: [] for kind in KINDS}

    def subscribe(self, subscriber: Subscriber, kinds: Iterable[Kind] = KINDS) -> None:
        """Call ``subscriber`` with every event of ``kinds`` from now on. It runs on the
        publisher's thread (the event loop): it must not block."""
        for kind in kinds:
            self._subscribers[kind].append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        for subscribers in self._subscribers.values():
            while subscriber in subscribers:
                subscribers.remove(subscriber)

    def add_journal(self, journal: JournalFn) -> None:
        """Call ``journal`` with every event from now on as ``(time, kind, entity, old, new,
        reason)``, before its subscribers: for a consumer that writes events as they come.
        It must neither block nor raise."""
        self.journals.append(journal)

    def remove_journal(self, journal: JournalFn) -> None:
        self.journals = [known for known in self.journals if known != journal]

    def publish(self, kind: Kind, entity: str, old: str, new: str, reason: str) -> int:
        """Publish one event; its id."""
        self.last_id += 1
        event_id = self.last_id
        now = self.clock()
        record: Record = (event_id, now, kind, entity, old, new, reason)
        self.recent.append(record)
        skipped = self.log_budget.admit(now)
        if skipped is not None:
            if skipped:
                log.warning("%d events not logged (more than %d a second); all are in the "
                            "uptime history", skipped, self.log_budget.per_second)
            log.info(
                "%s %s: %s -> %s (%s)", kind, entity, old, new, reason,
                extra={"kind": kind, "entity": entity, "old": old, "new": new,
                       "reason": reason},
            )
        for journal in self.journals:
            journal(now, kind, entity, old, new, reason)
        subscribers = self._subscribers.get(kind)
        if subscribers:
            event = event_of(record)
            for subscriber in subscribers:
                try:
                    subscriber(event)
                except Exception:  # one broken subscriber must not stop the others or the caller
                    log.exception("event subscriber %r failed on event %d", subscriber,
                                  event_id)
        return event_id

    def since(self, after: int = 0, limit: int = KEEP) -> list[Event]:
        """Events with an id above ``after``, oldest first, at most ``limit``."""
        out: list[Event] = []
        for record in self.recent:
            if record[0] > after:
                if len(out) >= limit:
                    break
                out.append(event_of(record))
        return out
