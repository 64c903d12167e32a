"""State changes of a node, published as events: what changed, from what to what, and why.

Every change of a server's shown state (``up -> down``), of a pool's state (``up ->
backup`` when it fails over to a later tier) and of a listener (bound, closed) is one
:class:`Event`. The :class:`EventLog` logs each one, keeps the most recent in memory for
``GET /v1/events`` and hands each to its subscribers (the uptime store records them).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

log = logging.getLogger("ninelives.events")

Kind = Literal["server", "pool", "listener", "node"]
KEEP = 1000  # events kept in memory for the API; the uptime store keeps them all


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


class EventLog:
    """Publishes events: logs them, keeps the last :data:`KEEP`, tells subscribers."""

    def __init__(
        self, clock: Callable[[], float] = time.time, keep: int = KEEP
    ) -> None:
        self.clock = clock
        self.recent: deque[Event] = deque(maxlen=keep)
        self.last_id = 0
        self.subscribers: list[Callable[[Event], None]] = []

    def publish(self, kind: Kind, entity: str, old: str, new: str, reason: str) -> Event:
        self.last_id += 1
        event = Event(self.last_id, self.clock(), kind, entity, old, new, reason)
        self.recent.append(event)
        log.info(
            "%s %s: %s -> %s (%s)", kind, entity, old, new, reason,
            extra={"kind": kind, "entity": entity, "old": old, "new": new, "reason": reason},
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
