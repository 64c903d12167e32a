"""The embedded coordinator: one SQLite file shared by the nodes of one machine.

Every node opens the same file (``cluster.local.path``); SQLite's locking makes each
write one transaction that no other process interleaves with (``BEGIN IMMEDIATE`` takes
the write lock before reading, so a check and the write that depends on it are atomic).
No service runs: a node that dies leaves rows whose expiry passes by itself.

**Clock.** A lease's expiry is stored as ``CLOCK_MONOTONIC`` seconds (Python's
``time.monotonic()`` on Linux reads that system-wide clock, so every process of the
machine reads the same value at the same instant). Wall time would be shared too, but an
NTP step or a hand-set date moves it, and a lease would then end early or late for
everyone; the monotonic clock never jumps. It restarts at boot, so the file records the
boot id (``/proc/sys/kernel/random/boot_id``): the first node that opens the file after
a reboot voids every lease left from before it (their holders died with the boot).
Processes must share the time namespace too (the default: network namespaces do).

**Fencing tokens.** One counter in the file (the *revision*) grows by one with every
write, and is never reset, reboots included (``synchronous=FULL``: a write is on disk
before it is acknowledged, so a power cut cannot hand out a token twice). A key's token
is the revision that created it, so every new holder has a larger token than the last.

**Expiry** is evaluated by whoever reads: a row whose expiry has passed is treated as
absent, and is deleted by the next write. Renewing does not change the revision (as in
etcd, where a keepalive is not a write).

**Watch** compares snapshots of the prefix every ``poll_interval`` (50 ms by default):
a read of a few rows in WAL mode, which never waits for writers. It reports each key
whose value, version or holder changed since the last poll, so a key changed twice
between two polls is reported once with its latest value, and a key that expired or was
replaced by a new holder is reported as a delete (then a put). An expired holder is
noticed within one poll after its expiry, with no process having to write.

All SQLite work runs in one thread per coordinator, so a slow disk or a lock held by
another process never stalls the event loop that serves traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from ninelives.cluster.coordinator import (
    MEMBERS_PREFIX,
    Change,
    ChangeKind,
    Conflict,
    CoordinatorUnavailable,
    Entry,
    Lease,
    LeaseLost,
    Member,
    Phase,
)

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 0.05  # watch: how often the prefix is read again
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    create_revision INTEGER NOT NULL,   -- the fencing token of a leased key
    mod_revision INTEGER NOT NULL,      -- the version compare-and-set expects
    lease INTEGER,                      -- lease id; NULL for a plain key
    expires REAL                        -- CLOCK_MONOTONIC seconds; NULL for a plain key
);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires) WHERE expires IS NOT NULL;
INSERT OR IGNORE INTO meta VALUES ('revision', 0);
INSERT OR IGNORE INTO meta VALUES ('boot', '');
"""
_COLUMNS = "key, value, create_revision, mod_revision, lease, expires"

T = TypeVar("T")


def read_boot_id() -> str:
    """This boot's id; a fixed word where the kernel offers none (not Linux)."""
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class _Row:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int | None
    expires: float | None

    def alive(self, now: float) -> bool:
        return self.expires is None or self.expires > now

    def entry(self) -> Entry:
        return Entry(self.key, self.value, self.create_revision, self.mod_revision,
                     leased=self.lease is not None)


class LocalCoordinator:
    """The :class:`~ninelives.cluster.coordinator.Coordinator` on a shared SQLite file.

    Build it with :meth:`open`. ``clock`` must be the same clock in every process that
    shares the file (the default, ``time.monotonic``, is; a fake clock is for tests that
    run every party in one process).
    """

    def __init__(
        self,
        path: Path,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        boot_id: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.path = Path(path)
        self._ttl = ttl
        self.clock = clock
        self.boot_id = read_boot_id() if boot_id is None else boot_id
        self.poll_interval = poll_interval
        # A write that waits longer than a third of a lease for another process's lock
        # fails, so a renewal is never still waiting when its holder must step down.
        self.busy_timeout = ttl / 3
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ninelives-local")
        self._db: sqlite3.Connection | None = None

    @classmethod
    async def open(
        cls,
        path: Path,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        boot_id: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> LocalCoordinator:
        """Open (creating if needed) the file; raise CoordinatorUnavailable if it cannot be."""
        coordinator = cls(path, ttl, clock=clock, boot_id=boot_id, poll_interval=poll_interval)
        try:
            await coordinator._run("open", coordinator._open)
        except BaseException:
            await coordinator.close()
            raise
        return coordinator

    @property
    def ttl(self) -> float:
        return self._ttl

    # -- the I/O shell: one thread, one connection -----------------------------------------

    async def _run(self, phase: Phase, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, work)
        except sqlite3.Error as error:
            raise CoordinatorUnavailable(phase, f"{self.path}: {_explain(error)}") from error
        except OSError as error:
            raise CoordinatorUnavailable(phase, f"{self.path}: {error}") from error
        except RuntimeError as error:  # the executor was shut down: closed
            raise CoordinatorUnavailable(phase, f"{self.path}: closed") from error

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)  # each statement idempotent, so concurrent opens agree
        with self._write() as db:
            (boot,) = db.execute("SELECT value FROM meta WHERE name = 'boot'").fetchone()
            if boot != self.boot_id:
                voided = db.execute("DELETE FROM entries WHERE lease IS NOT NULL").rowcount
                db.execute("UPDATE meta SET value = ? WHERE name = 'boot'", (self.boot_id,))
                if boot:
                    log.info("%s: the machine rebooted since the last use; voided %d "
                             "leases of the previous boot", self.path, voided)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, the lock taken before anything is read."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT leaves it open too
                db.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("the coordinator is closed")
        return self._db

    def _row(self, db: sqlite3.Connection, key: str) -> _Row | None:
        found = db.execute(f"SELECT {_COLUMNS} FROM entries WHERE key = ?", (key,)).fetchone()
        return _Row(*found) if found is not None else None

    def _rows(self, db: sqlite3.Connection, prefix: str) -> list[_Row]:
        if not prefix:
            query = db.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY key")
        else:
            end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            query = db.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE key >= ? AND key < ? ORDER BY key",
                (prefix, end),
            )
        return [_Row(*found) for found in query.fetchall()]

    def _next_revision(self, db: sqlite3.Connection, now: float) -> int:
        # Every write passes here: drop what expired, then count the write.
        db.execute("DELETE FROM entries WHERE expires IS NOT NULL AND expires <= ?", (now,))
        db.execute("UPDATE meta SET value = value + 1 WHERE name = 'revision'")
        (revision,) = db.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()
        return int(revision)

    def _revision(self, db: sqlite3.Connection) -> int:
        (revision,) = db.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()
        return int(revision)

    # -- the interface ---------------------------------------------------------------------

    async def acquire(self, key: str, value: str) -> Lease | None:
        def work() -> Lease | None:
            # A follower polling a held key reads without the write lock.
            row = self._row(self._connection(), key)
            if row is not None and row.alive(self.clock()):
                return None
            with self._write() as db:
                now = self.clock()
                row = self._row(db, key)
                if row is not None and row.alive(now):
                    return None
                revision = self._next_revision(db, now)
                db.execute(
                    f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (key, value, revision, revision, revision, now + self._ttl),
                )
                return Lease(key, value, token=revision, id=revision, ttl=self._ttl,
                             renewed_at=now)

        return await self._run("acquire", work)

    async def renew(self, lease: Lease) -> Lease:
        def work() -> Lease:
            with self._write() as db:
                now = self.clock()
                updated = db.execute(
                    "UPDATE entries SET expires = ? WHERE key = ? AND lease = ? AND expires > ?",
                    (now + self._ttl, lease.key, lease.id, now),
                ).rowcount
                if not updated:
                    raise LeaseLost("renew", self._why_lost(db, lease, now))
                return Lease(lease.key, lease.value, lease.token, lease.id, self._ttl, now)

        return await self._run("renew", work)

    def _why_lost(self, db: sqlite3.Connection, lease: Lease, now: float) -> str:
        row = self._row(db, lease.key)
        if row is None:
            return f"{lease.key}: the key is gone (token {lease.token})"
        if row.lease == lease.id and row.expires is not None:
            return f"{lease.key}: the lease expired {now - row.expires:.3f}s ago"
        if row.lease is None:
            return f"{lease.key}: the key was overwritten as a plain key"
        if row.alive(now):
            return f"{lease.key}: now held with token {row.create_revision}, not {lease.token}"
        return f"{lease.key}: the key was replaced and has expired since"

    async def release(self, lease: Lease) -> None:
        def work() -> None:
            with self._write() as db:
                row = self._row(db, lease.key)
                if row is not None and row.lease == lease.id:
                    self._next_revision(db, self.clock())
                    db.execute("DELETE FROM entries WHERE key = ? AND lease = ?",
                               (lease.key, lease.id))

        await self._run("release", work)

    async def get(self, key: str) -> Entry | None:
        def work() -> Entry | None:
            row = self._row(self._connection(), key)
            return row.entry() if row is not None and row.alive(self.clock()) else None

        return await self._run("get", work)

    async def compare_and_set(self, key: str, value: str, expected: int | None) -> Entry:
        def work() -> Entry:
            with self._write() as db:
                now = self.clock()
                row = self._row(db, key)
                current = row.entry() if row is not None and row.alive(now) else None
                if (current.version if current is not None else None) != expected:
                    raise Conflict(key, expected, current)
                revision = self._next_revision(db, now)
                created = current.token if current is not None else revision
                # As etcd's put without a lease: the key is plain from now on.
                db.execute(
                    f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, NULL, NULL)",
                    (key, value, created, revision),
                )
                return Entry(key, value, created, revision, leased=False)

        return await self._run("compare_and_set", work)

    def watch(self, prefix: str) -> LocalWatch:
        return LocalWatch(self, prefix)

    async def register(self, member: Member, lease: Lease | None = None) -> Lease:
        value = member.to_json()

        def work() -> Lease:
            with self._write() as db:
                now = self.clock()
                if lease is not None:
                    updated = db.execute(
                        "UPDATE entries SET value = ?, mod_revision = ? "
                        "WHERE key = ? AND lease = ? AND expires > ?",
                        (value, self._next_revision(db, now), member.key, lease.id, now),
                    ).rowcount
                    if not updated:
                        raise LeaseLost("register", self._why_lost(db, lease, now))
                    return Lease(member.key, value, lease.token, lease.id, lease.ttl,
                                 lease.renewed_at)
                revision = self._next_revision(db, now)
                db.execute(
                    f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (member.key, value, revision, revision, revision, now + self._ttl),
                )
                return Lease(member.key, value, revision, revision, self._ttl, now)

        return await self._run("register", work)

    async def members(self) -> list[Member]:
        def work() -> list[_Row]:
            now = self.clock()
            return [r for r in self._rows(self._connection(), MEMBERS_PREFIX) if r.alive(now)]

        return parse_members(await self._run("members", work))

    async def close(self) -> None:
        def work() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        with contextlib.suppress(RuntimeError):  # closed twice
            await asyncio.get_running_loop().run_in_executor(self._executor, work)
        self._executor.shutdown(wait=False)

    # -- for LocalWatch --------------------------------------------------------------------

    async def snapshot(self, prefix: str) -> tuple[int, dict[str, _Row]]:
        """The store's revision and the live rows below ``prefix``, read at one instant."""

        def work() -> tuple[int, dict[str, _Row]]:
            db = self._connection()
            db.execute("BEGIN")  # one read snapshot for both queries
            try:
                now = self.clock()
                rows = {r.key: r for r in self._rows(db, prefix) if r.alive(now)}
                return self._revision(db), rows
            finally:
                db.execute("COMMIT")

        return await self._run("watch", work)


def parse_members(rows: list[_Row]) -> list[Member]:
    members: list[Member] = []
    for row in rows:
        try:
            members.append(Member.from_json(row.value))
        except ValueError as error:
            log.warning("member record %s skipped: %s", row.key, error)
    return sorted(members, key=lambda m: m.name)


def diff(before: dict[str, _Row], after: dict[str, _Row], revision: int) -> list[Change]:
    """What changed between two snapshots of a prefix, puts in revision order."""
    changes: list[Change] = []
    for key, old in before.items():
        new = after.get(key)
        if new is None or new.create_revision != old.create_revision:
            changes.append(Change(ChangeKind.DELETE, key, None, revision))
    puts = [
        row for key, row in after.items()
        if key not in before or before[key].mod_revision != row.mod_revision
    ]
    for row in sorted(puts, key=lambda r: r.mod_revision):
        changes.append(Change(ChangeKind.PUT, row.key, row.value, row.mod_revision))
    return changes


class LocalWatch:
    """Changes below a prefix, found by comparing snapshots every ``poll_interval``."""

    def __init__(self, coordinator: LocalCoordinator, prefix: str) -> None:
        self._coordinator = coordinator
        self._prefix = prefix
        self._rows: dict[str, _Row] | None = None
        self._pending: list[Change] = []

    async def __aenter__(self) -> Self:
        _, self._rows = await self._coordinator.snapshot(self._prefix)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._rows = None

    def __aiter__(self) -> AsyncIterator[Change]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[Change]:
        if self._rows is None:
            raise RuntimeError("enter the watch (async with) before iterating it")
        while self._rows is not None:
            while self._pending:
                yield self._pending.pop(0)
            await asyncio.sleep(self._coordinator.poll_interval)
            revision, rows = await self._coordinator.snapshot(self._prefix)
            if self._rows is None:
                return
            self._pending = diff(self._rows, rows, revision)
            self._rows = rows


def _explain(error: sqlite3.Error) -> str:
    text = str(error)
    if "locked" in text or "busy" in text:
        return f"{text} (another process held the file's write lock too long)"
    return text
