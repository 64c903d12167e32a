"""The uptime store: what happened to every entity, recorded durably, off the event loop.

Producers (the event log, through the journal :meth:`UptimeStore.attach` adds; the
counter sampler) only queue an item (:mod:`ninelives.uptime.journal`, compiled, where the
transitions of servers, pools and listeners are gathered by entity as they come): a
fraction of a microsecond on the event loop, never a disk write. A feeder thread sends
what is queued to the writer, a process of its own (:mod:`ninelives.uptime.writer`),
without a Python step per item (it holds the GIL the event loop needs while it works): a
batch at a time, one ``marshal`` and one pipe write. The writer applies each batch in one
transaction and commits (group commit: under a burst the batches grow, so the fsyncs per
second stay bounded while nothing waits for a timer), then says how many items are
committed. What :attr:`UptimeStore.recorded` counts, and what ``on_commit`` is told, has
been committed with ``synchronous=FULL`` (see :mod:`ninelives.uptime.schema`): a SIGKILL,
or a power cut, cannot take it back. The writer is a process, not a thread, so that its
work does not hold the GIL the event loop needs.

The node's own downtime: every commit, and at least every :data:`HEARTBEAT_EVERY` seconds
a batch of its own, records a heartbeat (the node's clock when it sent the batch). A node
that stops cleanly closes every interval and opens "down" intervals for itself and its
listeners (reason ``node not running: stopped``); one that was killed leaves its intervals
open, and the next start closes them at the last heartbeat and records the same "down"
intervals from then (``node not running: killed or crashed``). Either way the gap is
downtime of the listeners until they are bound again, so a crash loop shows in the
availability it cost. The writer of a killed node commits what it had been sent and exits;
the next start waits for it (a lock it holds) before it accounts for the gap.

Housekeeping (at open, then hourly, in the writer): rows older than the retention go;
intervals older than :data:`COMPACT_AFTER` that continue one another in the same class
(``up`` then ``falling`` then ``up``) are merged into one, which keeps the state and
reason that began it, so a server that flapped for a year is a few rows, and its incidents
and their causes are unchanged.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import marshal
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ninelives
from ninelives.events import Event, EventLog
from ninelives.uptime import schema
from ninelives.uptime.availability import StoredInterval
from ninelives.uptime.journal import Journal
from ninelives.uptime.ledger import COMPACT_AFTER, Ledger, Resumed, iso
from ninelives.uptime.schema import DAY, Counts, Key, StoreError
from ninelives.uptime.wire import (
    CLOSE_ITEM,
    FLUSH,
    HOUSEKEEP,
    RETIRE,
    SAMPLE,
    STOP,
    TRANSITION,
    Frames,
    send,
)

if TYPE_CHECKING:
    import sqlite3

    from ninelives.cluster.coverage import Coverage

__all__ = ["COMPACT_AFTER", "FILE_NAME", "Resumed", "UptimeStore", "iso", "open_history"]

log = logging.getLogger("ninelives.uptime")

FILE_NAME = "uptime.db"
DEFAULT_RETENTION = 400 * DAY
HEARTBEAT_EVERY = 1.0  # seconds: a killed node's downtime is over-counted by at most this
# Seconds from sending one batch to sending the next, at least. Under a burst what arrives
# meanwhile waits for the next batch: each commit costs the writer a fixed part (pages
# rewritten to the WAL with their checksums, an fsync, the statements), and each flapping
# server a few row writes (:mod:`ninelives.uptime.batch`: its transitions between two
# commits are one run), so the writer's CPU per transition falls as the batches grow, and
# that CPU is taken from the data plane where cores are short. 200 servers flapping 10,000
# times a second cost the writer (callgrind) 4,020 instructions a transition with 2
# commits a second, 2,720 with 1. Only after a batch of :data:`BURST` items or more: a
# node's usual trickle (a few events at a time) is sent as it comes; a flush or a close
# does not wait. A kill can lose at most this much that was not yet reported as recorded.
COMMIT_GAP = 1.0
BURST = 20  # items in one batch: at 10,000 a second, what arrives during a 2 ms commit
# Seconds that open waits for the writer of an earlier run (a node killed a moment ago)
# to commit what it had and exit; as long as SQLite waits for a lock (schema.connect).
LOCK_WAIT = 30.0
LOCK_POLL = 0.01


def open_history(place: Path) -> UptimeStore:
    """A node's uptime history to read, from its ``state_dir`` (or the file in it), by a
    process other than the node: not opened (no writer, no housekeeping), so it writes
    nothing; each read is a snapshot of its own on a query-only connection (WAL), so the
    node may be writing meanwhile. StoreError names the path if none is there."""
    path = place / FILE_NAME if place.is_dir() else place
    if not path.is_file():
        raise StoreError(f"{path}: no uptime history here (expected a node's state_dir, "
                         f"which holds {FILE_NAME})")
    return UptimeStore(path)


@dataclass(slots=True)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False  # committed (False: the writer is gone)


class UptimeStore:
    """One node's uptime history. Producers call from any thread; a process of its own
    writes."""

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
        self.on_commit = on_commit  # called in a thread of the store with ``recorded``
        self.heartbeat_every = heartbeat_every
        self.commit_gap = commit_gap
        self.burst = burst
        self.recorded = 0  # items (events, transitions, samples) committed so far
        self.last_error = ""
        self._journal = Journal()  # what is not sent yet
        self._events: EventLog | None = None  # the log whose events go in _journal
        self._hurry = threading.Event()  # set by flush and close: end the commit gap now
        self._sent = 0  # items sent that count in ``recorded``
        self._flushes: dict[int, _Flush] = {}
        self._flush_ids = itertools.count(1)
        self._writer: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- life cycle ---------------------------------------------------------------------------

    def open(self, node: str, served: Coverage | None = None) -> Resumed:
        """Open (or create) the database, account for the time the node was not running,
        and start the writer. ``served``: another node of the cluster has served since then
        (its listeners' and the cluster's gap is ``elsewhere`` from then on, not down).
        Raises sqlite3.Error / StoreError / OSError."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self._lock()
        try:
            with closing(schema.connect(self.path)) as conn:
                schema.create(conn)
                resumed = Ledger(conn).resume(node, served, self.clock())
            self._start_writer(lock)
        finally:
            os.close(lock)  # the writer holds it from now on
        return resumed

    def _lock(self) -> int:
        """Take the store's lock (held by its writer while it runs): wait for the writer of
        an earlier run of the node, which commits what it was sent before it exits."""
        lock_path = self.path.with_name(self.path.name + "-lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreError(
                        f"{self.path}: another process has been writing it for {LOCK_WAIT:.0f}s"
                        f" (a node running with the same state_dir?)") from None
                time.sleep(LOCK_POLL)

    def _start_writer(self, lock: int) -> None:
        writer_reads, node_writes = os.pipe()
        node_reads, writer_writes = os.pipe()
        root = str(Path(ninelives.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self._writer = subprocess.Popen(
                [sys.executable, "-m", "ninelives.uptime.writer", str(self.path),
                 repr(self.retention), repr(self.clock()), str(writer_reads), str(writer_writes),
                 str(lock)],
                pass_fds=(writer_reads, writer_writes, lock), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, env=env,
            )
        except BaseException:
            os.close(node_writes)
            os.close(node_reads)
            raise
        finally:
            os.close(writer_reads)  # the writer's ends: its own copies are all that remain
            os.close(writer_writes)
        self._threads = [
            threading.Thread(target=self._feed, args=(node_writes,), name="uptime-feeder",
                             daemon=True),
            threading.Thread(target=self._hear, args=(node_reads,), name="uptime-acks",
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def writer_pid(self) -> int | None:
        return None if self._writer is None else self._writer.pid

    def close(self, timeout: float = 10.0) -> None:
        """Commit everything queued, then close. Producers' later calls are ignored."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        if writer is None:
            return
        self.detach()
        self._journal.put(CLOSE_ITEM, last=True)  # after the last event of the log
        self._hurry.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            log.error("uptime store: the writer did not finish within %ss", timeout)

    # -- producers (any thread; never block) ----------------------------------------------------

    def _put(self, item: tuple[Any, ...]) -> None:
        if not self._closed:
            self._journal.put(item)

    def attach(self, events: EventLog) -> None:
        """Record every event ``events`` publishes from now on (until the store closes or
        its writer is gone): its journal is the store's. Instead of the log attached
        before, if any."""
        self.detach()
        if not self._closed:
            self._events = events
            events.add_journal(self._journal.event)

    def detach(self) -> None:
        """Record no more of the attached log's events."""
        events, self._events = self._events, None
        if events is not None:
            events.remove_journal(self._journal.event)

    def record(self, event: Event) -> None:
        """Record one event (those of an attached log are recorded without it)."""
        if not self._closed:
            self._journal.event(event.time, event.kind, event.entity, event.old, event.new,
                                event.reason)

    def mark(self, kind: str, entity: str, state: str, reason: str, at: float) -> None:
        self._put((TRANSITION, kind, entity, state, reason, at))

    def add_counts(self, at: float, rows: Iterable[tuple[str, str, Counts]]) -> None:
        if not self._closed:
            self._put((SAMPLE, at, tuple((kind, name, tuple(counts))
                                         for kind, name, counts in rows)))

    def retire(self, keep: Iterable[Key], kinds: Iterable[str], at: float) -> None:
        self._put((RETIRE, frozenset(keep), frozenset(kinds), at))

    def stop(self, node: str, at: float) -> None:
        self._put((STOP, node, at))

    def housekeep(self) -> None:
        """Apply the retention and compact old intervals now (the writer also does it at
        open and every hour)."""
        self._put((HOUSEKEEP, self.clock()))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call is committed."""
        if self._closed or self._writer is None:
            return False
        flush = _Flush()
        flush_id = next(self._flush_ids)
        self._flushes[flush_id] = flush
        self._put((FLUSH, flush_id))
        self._hurry.set()
        return flush.done.wait(timeout) and flush.ok

    @property
    def pending(self) -> int:
        """Items queued or sent, not yet committed."""
        return self._journal.count + max(0, self._sent - self.recorded)

    # -- the feeder and the writer's answers (threads of the store) ---------------------------

    def _feed(self, fd: int) -> None:
        """Send what is queued, a batch at a time, and a heartbeat when there is nothing."""
        journal = self._journal
        last_sent = time.monotonic()
        try:
            while True:
                # What is queued, or nothing when it is time for a heartbeat.
                journal.ready.wait(max(0.0, last_sent + self.heartbeat_every - time.monotonic()))
                items, count = journal.take()
                last_sent = time.monotonic()
                send(fd, marshal.dumps((self.clock(), count, items)))
                self._sent += count
                if CLOSE_ITEM in items:
                    return
                if count >= self.burst:  # under a burst: wait for more, a commit at a time
                    self._hurry.wait(max(0.0, last_sent + self.commit_gap - time.monotonic()))
                    self._hurry.clear()
        except OSError:
            return  # the writer is gone: _hear tells
        finally:
            os.close(fd)

    def _hear(self, fd: int) -> None:
        """Take in what the writer says after each commit, until it exits."""
        frames = Frames(fd)
        try:
            while not frames.ended:
                for payload in frames.read():
                    recorded, flushed, error, complaint = marshal.loads(payload)
                    if complaint:
                        log.error("uptime store: %s", complaint)
                    self.last_error = error
                    committed = recorded != self.recorded
                    self.recorded = recorded
                    for flush_id in flushed:
                        flush = self._flushes.pop(flush_id)
                        flush.ok = True
                        flush.done.set()
                    if committed and self.on_commit is not None:
                        try:
                            self.on_commit(recorded)
                        except Exception:  # the caller's bug must not stop the answers
                            log.exception("uptime store: on_commit failed")
        finally:
            os.close(fd)
            self._writer_exited()

    def _writer_exited(self) -> None:
        assert self._writer is not None
        code = self._writer.wait()
        failed = not self._closed or code != 0
        self._closed = True
        self.detach()  # before the error is told: from then on nothing more is queued
        self._journal.discard()  # what nobody will send
        if failed:
            self.last_error = f"the writer process exited ({code}); nothing more is recorded"
            log.error("uptime store: %s", self.last_error)
        for flush in list(self._flushes.values()):
            flush.done.set()
        self._flushes.clear()

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

