"""What the node has for the uptime store's writer and has not sent yet: its side of every
event, on the event loop, in about 1,800 instructions each (compiled with mypyc).

The items of :mod:`ninelives.uptime.wire`, in the order they came, but for the transitions
of servers, pools and listeners: those since the last other item are gathered by kind and
entity into one ``STATES`` item (three lists an entity: starts, states, reasons). A server
that flaps 50 times a second is then, for the writer, three lists to store as one run
(:meth:`ninelives.uptime.batch.IntervalWrites.flap`), not 50 items to read, sort and take
apart, each a handful of Python objects: with 200 servers flapping 10,000 times a second
the writer's instructions a transition fell from 6,640 to 4,020 (its CPU is taken from the
data plane where cores are few), for 690 more on the event loop than a queue's ``put``.
Nothing is lost to the gathering: the other items (a sample of counts, a stop, a flush) end the
gathering, so everything the writer applies is in the order it happened, entity by
entity, and what came before a flush is before it.

Producers call from any thread (the event loop's publish is one of them), under a lock
(``acquire`` and ``release`` called as they are: a ``with`` block cost the event loop 460
instructions more an event); the store's feeder thread takes everything at once
(:meth:`Journal.take`).
"""

from __future__ import annotations

import threading
from typing import Any

from ninelives.uptime.wire import EVENT, INTERVAL_KINDS, NOT_RECORDED, STATES

# kind -> entity -> (starts, states, reasons), each entity's in order
Gathered = dict[str, dict[str, tuple[list[float], list[str], list[str]]]]


class Journal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ready = threading.Event()  # set when something is queued, for the feeder
        self.closed = False  # what comes after is dropped
        self._items: list[tuple[Any, ...]] = []
        self._gathering: Gathered | None = None  # the STATES item at the end of _items
        self._count = 0  # recorded items (a transition each, in STATES) in _items

    def event(self, at: float, kind: str, entity: str, old: str, new: str,
              reason: str) -> None:
        """An event of the node's log (an :meth:`ninelives.events.EventLog.add_journal`
        journal)."""
        self._lock.acquire()
        try:
            if self.closed:
                return
            if kind in INTERVAL_KINDS:
                gathering = self._gathering
                if gathering is None:
                    gathering = self._gathering = {}
                    self._items.append((STATES, gathering))
                by_entity = gathering.get(kind)
                if by_entity is None:
                    by_entity = gathering[kind] = {}
                lists = by_entity.get(entity)
                if lists is None:
                    by_entity[entity] = ([at], [new], [reason])
                else:
                    lists[0].append(at)
                    lists[1].append(new)
                    lists[2].append(reason)
            else:
                self._items.append((EVENT, at, kind, entity, old, new, reason))
                self._gathering = None
            self._count += 1
            if self._count == 1:
                self.ready.set()
        finally:
            self._lock.release()

    def put(self, item: tuple[Any, ...], last: bool = False) -> None:
        """Any other item of the wire; it ends the gathering. ``last``: what comes after
        it is dropped."""
        self._lock.acquire()
        try:
            if self.closed:
                return
            self.closed = last
            self._items.append(item)
            self._gathering = None
            if item[0] not in NOT_RECORDED:
                self._count += 1
            self.ready.set()
        finally:
            self._lock.release()

    def take(self) -> tuple[list[tuple[Any, ...]], int]:
        """Everything queued, and how many recorded items (transitions) it holds; the
        journal is empty after."""
        self._lock.acquire()
        try:
            items, count = self._items, self._count
            self._items, self._gathering, self._count = [], None, 0
            self.ready.clear()
            return items, count
        finally:
            self._lock.release()

    def discard(self) -> None:
        """Drop what is queued and whatever comes later (nobody will send it)."""
        self._lock.acquire()
        try:
            self.closed = True
            self._items, self._gathering, self._count = [], None, 0
        finally:
            self._lock.release()

    @property
    def count(self) -> int:
        return self._count
