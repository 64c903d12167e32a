"""The writing side of the uptime database: items of :mod:`ninelives.uptime.wire` applied in
transactions, the node's downtime accounted at open, housekeeping.

One :class:`Ledger` writes a database at a time: the node's, at open, for the resume
(before its writer starts), then the writer process's (:mod:`ninelives.uptime.writer`).
It keeps in memory what it needs so that a transition asks the database nothing: every
entity's id, and each entity's open interval.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ninelives.uptime import schema
from ninelives.uptime.batch import RUN_SPAN, IntervalWrites
from ninelives.uptime.compaction import housekeep
from ninelives.uptime.schema import DAY, LEVELS, Key
from ninelives.uptime.wire import (
    EVENT,
    FLUSH,
    INTERVAL_KINDS,
    RETIRE,
    SAMPLE,
    STATES,
    STOP,
    TRANSITION,
)

if TYPE_CHECKING:
    from ninelives.cluster.coverage import Coverage

COMPACT_AFTER = 7 * DAY  # full detail (falling, rising, every reason) for a week
NOT_RUNNING = "node not running"
# Entities whose time while the node does not run is counted: down, or ``elsewhere`` when
# another node of the cluster served meanwhile (then it is not the service's downtime).
GAP_KINDS = ("node", "listener", "cluster")
ELSEWHERE = "elsewhere"


@dataclass(frozen=True, slots=True)
class Resumed:
    """What the store found when it was opened: how the node's last run ended."""

    last_alive: float | None  # None: the first start with this store
    clean: bool  # stopped cleanly (True) or killed / crashed (False)
    reason: str  # the reason recorded for the gap; "" on a first start
    served: Coverage | None = None  # another node of the cluster served meanwhile

    def describe(self, now: float) -> str:
        if self.last_alive is None:
            return "uptime history starts now"
        gap = now - self.last_alive
        text = f"not running for {gap:.3f}s since {iso(self.last_alive)}: {self.reason}"
        if self.served is not None:
            text += f"; {self.served.describe()} (from {iso(self.served.since)})"
        return text


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


class Ledger:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._entities: dict[Key, int] = {}
        self._kinds: dict[int, Key] = {}
        self._open: dict[int, tuple[int, float]] = {}  # entity -> (open row id, its start)
        self._writes = IntervalWrites()  # interval rows of the transaction under way

    def load(self) -> None:
        """Read what is kept in memory (again, after a transaction failed)."""
        conn = self.conn
        self._entities, self._kinds = {}, {}
        for entity, kind, name in conn.execute("SELECT id, kind, name FROM entity"):
            self._entities[kind, name] = entity
            self._kinds[entity] = (kind, name)
        self._open = {
            entity: (row, started)
            for row, entity, started in conn.execute(
                "SELECT id, entity, started FROM interval WHERE ended IS NULL"
            )
        }
        self._writes = IntervalWrites.after(conn)

    # -- at open --------------------------------------------------------------------------------

    def resume(self, node: str, served: Coverage | None, now: float) -> Resumed:
        """Account for the time the node was not running, in one transaction (which also
        reads what is kept in memory, so nothing written before it is missed)."""
        with self._committing(now) as conn:
            self.load()
            heartbeat = schema.get_meta(conn, "heartbeat")
            stopped = schema.get_meta(conn, "stopped")
            if heartbeat is None:
                resumed = Resumed(None, True, "")
            elif stopped is not None:
                # The "down" intervals were opened when it stopped; they end when it serves.
                resumed = Resumed(stopped, True, f"{NOT_RUNNING}: stopped", served)
                if served is not None:
                    self._served_meanwhile(served, now)
            else:
                last = max([heartbeat, *(started for _, started in self._open.values())])
                resumed = Resumed(last, False, f"{NOT_RUNNING}: killed or crashed "
                                               f"(last heartbeat {iso(heartbeat)})", served)
                self._stop_all(node, last, resumed.reason)
                if served is not None:
                    self._served_meanwhile(served, now)
            schema.set_meta(conn, "stopped", None)
        return resumed

    # -- the writer's transactions ----------------------------------------------------------------

    def transaction(self, items: Sequence[tuple[Any, ...]], now: float) -> tuple[int, list[int]]:
        """Apply ``items`` and the heartbeat ``now`` in one transaction; how many items were
        recorded, and the ids of the flushes among them. Raises sqlite3.Error (nothing
        applied; call :meth:`load` before the next)."""
        flushes: list[int] = []
        applied = 0
        with self._committing(now) as conn:
            for item in items:
                tag = item[0]
                if tag == STATES:
                    applied += self._states(item[1])
                    continue
                if tag == EVENT:
                    _, at, kind, entity, old, new, reason = item
                    if kind in INTERVAL_KINDS:
                        self._transition(kind, entity, new, reason, at)
                    else:
                        conn.execute(
                            "INSERT INTO changes (time, kind, entity, old, new, reason)"
                            " VALUES (?, ?, ?, ?, ?, ?)", (at, kind, entity, old, new, reason))
                elif tag == TRANSITION:
                    self._transition(*item[1:])
                elif tag == SAMPLE:
                    self._sample(item[1], item[2])
                elif tag == RETIRE:
                    self._retire(item[1], item[2], item[3])
                elif tag == STOP:
                    self._stop_all(item[1], item[2], f"{NOT_RUNNING}: stopped")
                    schema.set_meta(conn, "stopped", item[2])
                elif tag == FLUSH:
                    flushes.append(item[1])
                    continue
                else:
                    continue  # CLOSE
                applied += 1
        return applied, flushes

    @contextmanager
    def _committing(self, heartbeat: float) -> Iterator[sqlite3.Connection]:
        """One write transaction: the interval rows the block queued are written at its
        end, with the heartbeat; nothing of it stays if the block raises."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            self._writes.write(conn)
            schema.set_meta(conn, "heartbeat", heartbeat)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def housekeeping(self, now: float, retention: float) -> None:
        """Retention and compaction in one transaction. Raises sqlite3.Error."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            housekeep(conn, self._kinds, now, retention, COMPACT_AFTER)
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.load()
            raise

    # -- inside a transaction ---------------------------------------------------------------------

    def _entity(self, kind: str, name: str) -> int:
        key = (kind, name)
        entity = self._entities.get(key)
        if entity is None:
            cursor = self.conn.execute("INSERT INTO entity (kind, name) VALUES (?, ?)", key)
            entity = cursor.lastrowid
            assert entity is not None
            self._entities[key] = entity
            self._kinds[entity] = key
        return entity

    def _states(self, gathered: dict[str, dict[str, tuple[list[float], list[str], list[str]]]]
                ) -> int:
        """A STATES item: each entity's transitions as one flap where they are one
        (:meth:`_flap`), else one at a time. How many there were."""
        count = 0
        for kind, by_entity in gathered.items():
            for name, (starts, states, reasons) in by_entity.items():
                count += len(starts)
                if len(starts) < 3 or not self._flap(kind, name, starts, states, reasons):
                    for at, state, reason in zip(starts, states, reasons, strict=True):
                        self._transition(kind, name, state, reason, at)
        return count

    def _flap(self, kind: str, name: str, starts: list[float], states: list[str],
              reasons: list[str]) -> bool:
        """Record the transitions of one entity as a flap if they are one: within
        :data:`RUN_SPAN`, in order, after its open interval, which is from an earlier
        transaction (else False, nothing done). Each check is C over the whole list."""
        first, last = starts[0], starts[-1]
        if last - first > RUN_SPAN or sorted(starts) != starts:
            return False
        entity = self._entity(kind, name)
        current = self._open.get(entity)
        row: int | None = None
        if current is not None:
            row, started = current
            if first < started or row in self._writes.new:
                return False
        opened = self._writes.flap(entity, row, starts, states, reasons)
        if opened is None:
            return False
        self._open[entity] = (opened, last)
        return True

    def _transition(self, kind: str, name: str, state: str, reason: str, at: float) -> None:
        """Queued in :attr:`_writes`, written at the end of the transaction."""
        entity = self._entity(kind, name)
        current = self._open.get(entity)
        row: int | None = None
        if current is not None:
            row, started = current
            if at < started:  # the wall clock stepped back: no negative interval
                at = started
        self._open[entity] = (self._writes.transition(entity, row, state, at, reason), at)

    def _end(self, entity: int, at: float) -> None:
        row, started = self._open.pop(entity)
        self._writes.end(row, max(at, started))

    def _stop_all(self, node: str, at: float, reason: str) -> None:
        """End every open interval at ``at``; the node and the listeners that had an
        interval open are down from then, for ``reason``."""
        down = {("node", node)}
        for entity in list(self._open):
            key = self._kinds[entity]
            if key[0] in GAP_KINDS:
                down.add(key)
            self._end(entity, at)
        for kind, name in sorted(down):
            self._transition(kind, name, "down", reason, at)

    def _served_meanwhile(self, served: Coverage, now: float) -> None:
        """Another node has served since ``served.since``: from then on the open "down"
        intervals of the gap of listeners and the cluster are ``elsewhere`` (not down);
        the node's own stay down. Runs at open, inside its transaction."""
        conn = self.conn
        since = min(served.since, now)  # a peer's clock ahead of ours: from now
        for entity, (row, started) in list(self._open.items()):
            kind, name = self._kinds[entity]
            if kind == "node" or kind not in GAP_KINDS:
                continue
            pending = self._writes.new.get(row)
            if pending is not None:
                state, reason = pending.state, pending.reason
            else:
                state, reason = conn.execute(
                    "SELECT state, reason FROM interval WHERE id = ?", (row,)).fetchone()
            if state != "down" or not reason.startswith(NOT_RUNNING):
                continue
            why = f"{reason}; {served.describe()}"
            if since > started:
                self._transition(kind, name, ELSEWHERE, why, since)
            elif pending is not None:
                pending.state, pending.reason = ELSEWHERE, why
            else:
                conn.execute("UPDATE interval SET state = ?, reason = ? WHERE id = ?",
                             (ELSEWHERE, why, row))

    def _retire(self, keep: frozenset[Key], kinds: frozenset[str], at: float) -> None:
        for entity in list(self._open):
            key = self._kinds[entity]
            if key[0] in kinds and key not in keep:
                self._end(entity, at)

    def _sample(self, at: float, rows: Sequence[tuple[str, str, Sequence[int]]]) -> None:
        params = []
        for kind, name, counts in rows:
            entity = self._entity(kind, name)
            for resolution, _ in LEVELS:
                bucket = int(at // resolution) * resolution
                params.append((resolution, bucket, entity, *counts))
        self.conn.executemany(
            "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (resolution, bucket, entity) DO UPDATE SET"
            " n0 = n0 + excluded.n0, n1 = n1 + excluded.n1, n2 = n2 + excluded.n2,"
            " n3 = n3 + excluded.n3, n4 = n4 + excluded.n4, n5 = n5 + excluded.n5",
            params,
        )
