"""The uptime store: what happened to every entity, recorded durably, off the event loop.

Producers (the event log's subscriber, the counter sampler) only put an item on a queue:
a few hundred nanoseconds on the event loop, never a disk write. One writer thread takes
everything queued, applies it in one transaction and commits (group commit: under a burst
the batches grow, so the fsyncs per second stay bounded while nothing waits for a timer).
What :attr:`UptimeStore.recorded` counts, and what ``on_commit`` is told, has been
committed with ``synchronous=FULL`` (see :mod:`ninelives.uptime.schema`): a SIGKILL, or a
power cut, cannot take it back.

The node's own downtime: every commit, and at least every :data:`HEARTBEAT_EVERY` seconds
a commit of its own, records a heartbeat. A node that stops cleanly closes every interval
and opens "down" intervals for itself and its listeners (reason ``node not running:
stopped``); one that was killed leaves its intervals open, and the next start closes them
at the last heartbeat and records the same "down" intervals from then (``node not
running: killed or crashed``). Either way the gap is downtime of the listeners until they
are bound again, so a crash loop shows in the availability it cost.

Housekeeping (at open, then hourly): rows older than the retention go; intervals older
than :data:`COMPACT_AFTER` that continue one another in the same class (``up`` then
``falling`` then ``up``) are merged into one, which keeps the state and reason that began
it, so a server that flapped for a year is a few rows, and its incidents and their causes
are unchanged.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ninelives.events import Event
from ninelives.uptime import schema
from ninelives.uptime.availability import StoredInterval
from ninelives.uptime.batch import IntervalWrites
from ninelives.uptime.compaction import housekeep
from ninelives.uptime.schema import DAY, LEVELS, Counts, Key, StoreError

if TYPE_CHECKING:
    from ninelives.cluster.coverage import Coverage

log = logging.getLogger("ninelives.uptime")

FILE_NAME = "uptime.db"
DEFAULT_RETENTION = 400 * DAY
HEARTBEAT_EVERY = 1.0  # seconds: a killed node's downtime is over-counted by at most this
HOUSEKEEPING_EVERY = 3600.0
COMPACT_AFTER = 7 * DAY  # full detail (falling, rising, every reason) for a week
MAX_BATCH = 10_000  # items per transaction
# Seconds from the start of one commit to the start of the next, at least. Under a burst
# what arrives meanwhile waits for the next commit: each commit costs the writer a fixed
# part (pages rewritten to the WAL with their checksums, an fsync, the statements), so
# its CPU per transition falls as the batches grow (at 10,000 transitions a second, with
# a store of 200,000 intervals: 15 us with a commit whenever the last one ended, 6.7 us
# with 20 a second, 4.7 us with 4), and that CPU is taken from the data plane where
# cores are short. Only after a batch of :data:`BURST` items or more: a node's usual
# trickle (a few events at a time) is committed as it comes; a full batch (a backlog)
# goes on at once; a flush or a close does not wait. A kill can lose at most this much
# that was not yet reported as recorded.
COMMIT_GAP = 0.25
BURST = 20  # items in one batch: at 10,000 a second, what arrives during a 2 ms commit
RETRY_MAX = 30.0  # seconds between attempts while the disk refuses writes

# Events of these kinds are states of an entity (intervals); other events (a node's
# reloads) are kept as changes.
INTERVAL_KINDS = frozenset({"server", "pool", "listener"})
NOT_RUNNING = "node not running"
# Entities whose time while the node does not run is counted: down, or ``elsewhere`` when
# another node of the cluster served meanwhile (then it is not the service's downtime).
GAP_KINDS = ("node", "listener", "cluster")
ELSEWHERE = "elsewhere"


@dataclass(frozen=True, slots=True)
class Transition:
    """A state the store itself records (a node up or down), like an event's."""

    kind: str
    entity: str
    state: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class Sample:
    """Requests counted since the last sample, per entity, at time ``at``."""

    at: float
    rows: tuple[tuple[str, str, Counts], ...]


@dataclass(frozen=True, slots=True)
class Retire:
    """Entities of ``kinds`` not in ``keep`` are gone from the config: close their intervals."""

    keep: frozenset[Key]
    kinds: frozenset[str]
    at: float


@dataclass(frozen=True, slots=True)
class Stop:
    """The node stops serving: every interval ends, the node and its listeners are down."""

    node: str
    at: float


@dataclass(slots=True)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


_CLOSE = object()
_HOUSEKEEP = object()
Item = Event | Transition | Sample | Retire | Stop | _Flush | object


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


def open_history(place: Path) -> UptimeStore:
    """A node's uptime history to read, from its ``state_dir`` (or the file in it), by a
    process other than the node: not opened (no writer thread, no housekeeping), so it
    writes nothing; each read is a snapshot of its own on a query-only connection (WAL),
    so the node may be writing meanwhile. StoreError names the path if none is there."""
    path = place / FILE_NAME if place.is_dir() else place
    if not path.is_file():
        raise StoreError(f"{path}: no uptime history here (expected a node's state_dir, "
                         f"which holds {FILE_NAME})")
    return UptimeStore(path)


class UptimeStore:
    """One node's uptime history. Producers call from any thread; one thread writes."""

    def __init__(
        self,
        path: Path,
        retention: float = DEFAULT_RETENTION,
        clock: Callable[[], float] = time.time,
        on_commit: Callable[[int], None] | None = None,
        heartbeat_every: float = HEARTBEAT_EVERY,
        commit_gap: float = COMMIT_GAP,
        burst: int = BURST,
    ) -> None:
        self.path = path
        self.retention = retention
        self.clock = clock
        self.on_commit = on_commit  # called in the writer thread with ``recorded``
        self.heartbeat_every = heartbeat_every
        self.commit_gap = commit_gap
        self.burst = burst
        self.recorded = 0  # items (events, transitions, samples) committed so far
        self.last_error = ""
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._hurry = threading.Event()  # set by flush and close: end the commit gap now
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._entities: dict[Key, int] = {}
        self._kinds: dict[int, Key] = {}
        self._open: dict[int, tuple[int, float]] = {}  # entity -> (open row id, its start)
        self._writes = IntervalWrites()  # interval rows of the transaction under way

    # -- life cycle ---------------------------------------------------------------------------

    def open(self, node: str, served: Coverage | None = None) -> Resumed:
        """Open (or create) the database, account for the time the node was not running,
        and start the writer thread. ``served``: another node of the cluster has served
        since then (its listeners' and the cluster's gap is ``elsewhere`` from then on,
        not down). Raises sqlite3.Error / StoreError / OSError."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = schema.connect(self.path)
        try:
            schema.create(conn)
            self._conn = conn
            self._load_caches()
            resumed = self._resume(node, served)
        except BaseException:
            conn.close()
            self._conn = None
            raise
        self._thread = threading.Thread(target=self._run, name="uptime-writer", daemon=True)
        self._thread.start()
        return resumed

    def _resume(self, node: str, served: Coverage | None) -> Resumed:
        conn = self._db()
        now = self.clock()
        heartbeat = schema.get_meta(conn, "heartbeat")
        stopped = schema.get_meta(conn, "stopped")
        conn.execute("BEGIN IMMEDIATE")
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
        self._writes.write(conn)
        schema.set_meta(conn, "stopped", None)
        schema.set_meta(conn, "heartbeat", now)
        conn.execute("COMMIT")
        return resumed

    def close(self, timeout: float = 10.0) -> None:
        """Commit everything queued, then close. Producers' later calls are ignored."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._queue.put(_CLOSE)
            self._hurry.set()
            thread.join(timeout)
            if thread.is_alive():
                log.error("uptime store: the writer did not finish within %ss", timeout)
        elif self._conn is not None:
            self._conn.close()

    # -- producers (any thread; never block) ----------------------------------------------------

    def record(self, event: Event) -> None:
        """An :class:`~ninelives.events.EventLog` subscriber."""
        if not self._closed:
            self._queue.put(event)

    def mark(self, kind: str, entity: str, state: str, reason: str, at: float) -> None:
        if not self._closed:
            self._queue.put(Transition(kind, entity, state, reason, at))

    def add_counts(self, at: float, rows: Iterable[tuple[str, str, Counts]]) -> None:
        if not self._closed:
            self._queue.put(Sample(at, tuple(rows)))

    def retire(self, keep: Iterable[Key], kinds: Iterable[str], at: float) -> None:
        if not self._closed:
            self._queue.put(Retire(frozenset(keep), frozenset(kinds), at))

    def stop(self, node: str, at: float) -> None:
        if not self._closed:
            self._queue.put(Stop(node, at))

    def housekeep(self) -> None:
        """Apply the retention and compact old intervals now (the writer also does it at
        open and every hour)."""
        if not self._closed:
            self._queue.put(_HOUSEKEEP)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call is committed."""
        if self._closed or self._thread is None:
            return False
        flush = _Flush()
        self._queue.put(flush)
        self._hurry.set()
        return flush.done.wait(timeout)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # -- reads (any thread, a connection of their own) ----------------------------------------
    # Each read is one read transaction: a consistent snapshot (WAL) of entities, intervals
    # and buckets, whatever the writer commits meanwhile.

    def read(
        self, start: float, end: float, now: float
    ) -> tuple[dict[Key, list[StoredInterval]], dict[Key, Counts]]:
        """The intervals and the request counts of ``[start, end)``, from one snapshot."""
        with self._snapshot() as conn:
            return (schema.read_intervals(conn, start, end),
                    schema.read_requests(conn, start, end, now, self.retention))

    def intervals(
        self, start: float, end: float, only: Collection[Key] | None = None
    ) -> dict[Key, list[StoredInterval]]:
        with self._snapshot() as conn:
            return schema.read_intervals(conn, start, end, only)

    def requests(self, start: float, end: float, now: float) -> dict[Key, Counts]:
        with self._snapshot() as conn:
            return schema.read_requests(conn, start, end, now, self.retention)

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        with closing(schema.connect(self.path, readonly=True)) as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("ROLLBACK")

    # -- the writer thread ----------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None, "the store is not open"
        return self._conn

    def _run(self) -> None:
        conn = self._db()
        next_beat = time.monotonic() + self.heartbeat_every
        next_housekeeping = time.monotonic()
        try:
            while True:
                try:
                    first = self._queue.get(timeout=max(0.0, next_beat - time.monotonic()))
                    batch = [first]
                except queue.Empty:
                    batch = []
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                closing_now = any(item is _CLOSE for item in batch)
                # Housekeeping asked for runs in queue order: after what came before it.
                while _HOUSEKEEP in batch:
                    cut = batch.index(_HOUSEKEEP)
                    self._commit(batch[:cut], give_up=closing_now)
                    self._housekeeping()
                    batch = batch[cut + 1:]
                    next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY
                began = time.monotonic()
                self._commit(batch, give_up=closing_now)
                next_beat = time.monotonic() + self.heartbeat_every
                if closing_now:
                    break
                if self.burst <= len(batch) < MAX_BATCH:  # a full batch: a backlog, no pause
                    self._hurry.wait(max(0.0, began + self.commit_gap - time.monotonic()))
                    self._hurry.clear()
                if time.monotonic() >= next_housekeeping:
                    self._housekeeping()
                    next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY
        except Exception:  # a bug: say so loudly; the node goes on serving without history
            log.exception("uptime store: the writer stopped; nothing more is recorded")
            self.last_error = "the writer stopped (see the log)"
            self._closed = True
        finally:
            conn.close()

    def _commit(self, batch: list[Item], give_up: bool) -> None:
        """Apply ``batch`` in one transaction; on a database error (disk full) retry with
        backoff, keeping the batch, until it commits (or, when closing, three tries)."""
        delay, tries = 0.5, 0
        while True:
            tries += 1
            try:
                self._transaction(batch)
                self.last_error = ""
                return
            except sqlite3.Error as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                conn = self._db()
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._load_caches()
                if give_up and tries >= 3:
                    log.error("uptime store: %s; %d items not recorded", exc, len(batch))
                    return
                log.error("uptime store: %s; retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    def _transaction(self, batch: list[Item]) -> None:
        conn = self._db()
        flushes: list[_Flush] = []
        applied = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for item in batch:
                if isinstance(item, Event):
                    if item.kind in INTERVAL_KINDS:
                        self._transition(item.kind, item.entity, item.new, item.reason, item.time)
                    else:
                        conn.execute(
                            "INSERT INTO changes (time, kind, entity, old, new, reason)"
                            " VALUES (?, ?, ?, ?, ?, ?)",
                            (item.time, item.kind, item.entity, item.old, item.new, item.reason),
                        )
                elif isinstance(item, Transition):
                    self._transition(item.kind, item.entity, item.state, item.reason, item.at)
                elif isinstance(item, Sample):
                    self._sample(item)
                elif isinstance(item, Retire):
                    self._retire(item)
                elif isinstance(item, Stop):
                    self._stop_all(item.node, item.at, f"{NOT_RUNNING}: stopped")
                    schema.set_meta(conn, "stopped", item.at)
                elif isinstance(item, _Flush):
                    flushes.append(item)
                    continue
                else:
                    continue  # _CLOSE
                applied += 1
            self._writes.write(conn)
            schema.set_meta(conn, "heartbeat", self.clock())
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.recorded += applied
        for flush in flushes:
            flush.done.set()
        if applied and self.on_commit is not None:
            self.on_commit(self.recorded)

    def _entity(self, kind: str, name: str) -> int:
        key = (kind, name)
        entity = self._entities.get(key)
        if entity is None:
            cursor = self._db().execute("INSERT INTO entity (kind, name) VALUES (?, ?)", key)
            entity = cursor.lastrowid
            assert entity is not None
            self._entities[key] = entity
            self._kinds[entity] = key
        return entity

    def _transition(self, kind: str, name: str, state: str, reason: str, at: float) -> None:
        """Queued in :attr:`_writes`, written at the end of the transaction."""
        entity = self._entity(kind, name)
        current = self._open.get(entity)
        if current is not None:
            row, started = current
            at = max(at, started)  # the wall clock stepped back: no negative interval
            self._writes.end(row, at)
        self._open[entity] = (self._writes.open(entity, state, at, reason), at)

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
        conn = self._db()
        since = min(served.since, now)  # a peer's clock ahead of ours: from now
        for entity, (row, started) in list(self._open.items()):
            kind, name = self._kinds[entity]
            if kind == "node" or kind not in GAP_KINDS:
                continue
            pending = self._writes.new.get(row)
            if pending is not None:
                state, reason = str(pending[2]), str(pending[5])
            else:
                state, reason = conn.execute(
                    "SELECT state, reason FROM interval WHERE id = ?", (row,)).fetchone()
            if state != "down" or not reason.startswith(NOT_RUNNING):
                continue
            why = f"{reason}; {served.describe()}"
            if since > started:
                self._transition(kind, name, ELSEWHERE, why, since)
            elif pending is not None:
                pending[2], pending[5] = ELSEWHERE, why
            else:
                conn.execute("UPDATE interval SET state = ?, reason = ? WHERE id = ?",
                             (ELSEWHERE, why, row))

    def _retire(self, item: Retire) -> None:
        for entity in list(self._open):
            key = self._kinds[entity]
            if key[0] in item.kinds and key not in item.keep:
                self._end(entity, item.at)

    def _sample(self, sample: Sample) -> None:
        params = []
        for kind, name, counts in sample.rows:
            entity = self._entity(kind, name)
            for resolution, _ in LEVELS:
                bucket = int(sample.at // resolution) * resolution
                params.append((resolution, bucket, entity, *counts))
        self._db().executemany(
            "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (resolution, bucket, entity) DO UPDATE SET"
            " n0 = n0 + excluded.n0, n1 = n1 + excluded.n1, n2 = n2 + excluded.n2,"
            " n3 = n3 + excluded.n3, n4 = n4 + excluded.n4, n5 = n5 + excluded.n5",
            params,
        )

    def _load_caches(self) -> None:
        conn = self._db()
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

    # -- housekeeping ---------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            housekeep(conn, self._kinds, self.clock(), self.retention, COMPACT_AFTER)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._load_caches()
            self.last_error = f"housekeeping: {exc}"
            log.error("uptime store: housekeeping failed: %s", exc)
