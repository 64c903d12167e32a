"""The uptime database: its tables, how a connection is opened, and the reads.

One SQLite file (``uptime.db`` under ``node.state_dir``) in WAL mode: the writer process
(:mod:`ninelives.uptime.writer`) commits while readers (``GET /v1/uptime``, in a worker
thread) read a consistent snapshot without waiting for it or blocking it.

Durability: ``synchronous=FULL``. In WAL mode ``NORMAL`` already survives the death of the
process (a committed transaction is in the WAL file, in the OS page cache, whatever happens
to the process) and never corrupts the database, but a power cut or kernel crash can roll
back the last transactions. With ``FULL`` every commit is fsynced before it is reported as
recorded, so "recorded" holds against power loss too. The cost is one fsync per commit,
paid by the writer process, not the event loop, and shared by everything a commit batches.

Tables:

- ``entity``: every server (``app/a1``), pool, provider (``app/cloud-a``), listener and
  node, by kind and name; the others refer to it by id.
- ``interval``: an entity in one state from ``started`` to ``ended`` (NULL while it holds)
  with the reason of the transition that began it. One entity has at most one open interval.
  A row may hold a run: intervals that began and ended within one transaction of the
  writer, the first in its columns, the next ones in ``later`` (see :func:`expand` and
  :mod:`ninelives.uptime.batch`); ``ended`` is the end of the last.
- ``requests``: counts by status class (``n0`` no response, ``n1``..``n5``) per entity per
  time bucket, at several resolutions (:data:`LEVELS`), each kept as long as it is useful.
- ``changes``: state changes that are not availability (a node's config reloads).
- ``meta``: the schema version, the heartbeat (last time the node was seen alive), and
  whether it stopped cleanly.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Collection
from operator import itemgetter
from pathlib import Path

from ninelives.uptime.availability import StoredInterval
from ninelives.uptime.batch import decode

SCHEMA_VERSION = 2  # 2: interval.later (runs)
HOUR = 3600
DAY = 86_400

# (bucket seconds, how long kept; None: the configured retention), finest first. Every
# sample is added to a bucket of each resolution in the same transaction, so the coarse
# rows are the roll-up of the fine ones with no roll-up job that could run twice or half.
# A window is read as whole coarse buckets inside it and finer ones at its edges
# (:func:`tiles`), so it is exact to the finest resolution still kept there: 10 s for the
# last 2 hours (burn rates over 5 min and 1 h), 5 min for a day, an hour for 35 days (a
# 30-day SLO), a day beyond. Weeks make a year quick to add up. A busy entity has
# 720 + 288 + 840 + 400 + 58 rows at any time.
LEVELS: tuple[tuple[int, float | None], ...] = (
    (10, 2 * HOUR),
    (300, DAY),
    (HOUR, 35 * DAY),
    (DAY, None),
    (7 * DAY, None),
)
# Above this window length, reading every interval is quicker than going by the index.
SCAN_WINDOW = 7 * DAY

Counts = tuple[int, int, int, int, int, int]  # no response, 1xx, 2xx, 3xx, 4xx, 5xx
Key = tuple[str, str]  # (kind, name)

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS entity (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (kind, name)
);
CREATE TABLE IF NOT EXISTS interval (
    id INTEGER PRIMARY KEY,
    entity INTEGER NOT NULL REFERENCES entity (id),
    state TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    reason TEXT NOT NULL,
    later BLOB
);
-- No index by entity: new rows would go at the end of every entity's range, rewriting a
-- page per entity and splitting them, about 5 KB written per transition where the table
-- and the index on ended, both appended to, take 200 bytes. Reads by entity go by time.
DROP INDEX IF EXISTS interval_by_entity;
CREATE INDEX IF NOT EXISTS interval_by_end ON interval (ended);
CREATE TABLE IF NOT EXISTS requests (
    resolution INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    entity INTEGER NOT NULL REFERENCES entity (id),
    n0 INTEGER NOT NULL, n1 INTEGER NOT NULL, n2 INTEGER NOT NULL,
    n3 INTEGER NOT NULL, n4 INTEGER NOT NULL, n5 INTEGER NOT NULL,
    PRIMARY KEY (resolution, bucket, entity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    entity TEXT NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_time ON changes (time);
"""


class StoreError(Exception):
    """The uptime database cannot be used (unreadable, from a newer ninelives, ...)."""


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are begun explicitly), WAL, FULL."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    if readonly:
        conn.execute("PRAGMA query_only=1")
    return conn


def create(conn: sqlite3.Connection) -> None:
    """Create the tables (or check the version of the ones there)."""
    conn.execute("BEGIN IMMEDIATE")
    for statement in _DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    row = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        conn.execute("ROLLBACK")
        raise StoreError(f"written by a newer ninelives (schema {row[0]}; this one knows "
                         f"{SCHEMA_VERSION})")
    if not _has_runs(conn):  # schema 1: no runs yet, every row is one interval
        conn.execute("ALTER TABLE interval ADD COLUMN later BLOB")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (SCHEMA_VERSION,))
    conn.execute("COMMIT")


def get_meta(conn: sqlite3.Connection, key: str) -> float | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: float | None) -> None:
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def read_intervals(
    conn: sqlite3.Connection, start: float, end: float, only: Collection[Key] | None = None,
) -> dict[Key, list[StoredInterval]]:
    """Every interval that overlaps ``[start, end)``, by entity (of the entities in
    ``only``, when given: an SLO of a listener reads no server); an entity's are in the
    order of their starts where a run was among them.
    The rows are returned as SQLite gives them (a year for a thousand servers is a hundred
    thousand of them: no object is made per row here)."""
    names = {entity: (kind, name) for entity, kind, name in conn.execute(
        "SELECT id, kind, name FROM entity")}
    by_id: dict[int, list[StoredInterval]] = defaultdict(list)
    if end - start > SCAN_WINDOW:  # most rows qualify: one pass over the table
        where = "coalesce(ended, 1e300) > ? AND started < ?"
    else:  # a few recent rows: by the index on ended
        where = "(ended > ? OR ended IS NULL) AND started < ?"
    params: list[object] = [start, end]
    if only is not None:
        wanted = set(only)
        ids = [e for e, key in names.items() if key in wanted]
        where += f" AND entity IN ({', '.join('?' * len(ids))})"
        params += ids
    runs = _has_runs(conn)  # not yet: schema 1, not yet opened by a node of this version
    for row in conn.execute(
        f"SELECT state, started, ended, reason, entity FROM interval WHERE {where}"
        + (" AND later IS NULL" if runs else ""), params,
    ):
        by_id[row[4]].append(row)
    if not runs:
        return {names[entity]: rows for entity, rows in by_id.items()}
    with_runs = set()
    for state, started, ended, reason, entity, later in conn.execute(
        f"SELECT state, started, ended, reason, entity, later FROM interval WHERE {where}"
        " AND later IS NOT NULL", params,
    ):
        by_id[entity].extend(
            interval for interval in expand(state, started, ended, reason, entity, later)
            if interval[1] < end and (interval[2] is None or interval[2] > start))
        with_runs.add(entity)
    for entity in with_runs:
        by_id[entity].sort(key=_START)
    return {names[entity]: rows for entity, rows in by_id.items()}


_START = itemgetter(1)


def _has_runs(conn: sqlite3.Connection) -> bool:
    return any(column[1] == "later" for column in conn.execute("PRAGMA table_info(interval)"))


def expand(state: str, started: float, ended: float | None, reason: str, entity: int,
           later: bytes) -> list[StoredInterval]:
    """The intervals of a row that holds a run: the first, then one for each interval in
    ``later`` (:func:`ninelives.uptime.batch.encode`), each ending where the next starts,
    the last at ``ended``."""
    out: list[StoredInterval] = []
    for at, next_state, next_reason in decode(later):
        out.append((state, started, at, reason, entity))
        state, started, reason = next_state, at, next_reason
    out.append((state, started, ended, reason, entity))
    return out


def _kept(resolution: int, keep: float | None, now: float, retention: float) -> float:
    """The start of the oldest bucket of ``resolution`` still kept."""
    return now - (retention if keep is None else min(keep, retention)) - resolution


def tiles(start: float, end: float, now: float, retention: float) -> list[tuple[int, float, float]]:
    """``(resolution, first, last)`` bucket ranges that add up to ``[start, end)``: whole
    coarse buckets inside it, finer ones at its edges while they are kept; where no finer
    one is kept, a bucket counts when its middle is inside (half a bucket at most off)."""
    coarse_first = sorted(LEVELS, key=lambda level: -level[0])
    out: list[tuple[int, float, float]] = []

    def cover(lo: float, hi: float, finer_than: int) -> None:
        if lo >= hi:
            return
        holding = [
            resolution for resolution, keep in coarse_first
            if resolution < finer_than and _kept(resolution, keep, now, retention) <= lo
        ]
        for resolution in holding:
            first = -(-lo // resolution) * resolution  # the first bucket starting at lo or after
            last = hi // resolution * resolution
            if first < last:
                out.append((resolution, first, last))
                cover(lo, first, resolution)
                cover(last, hi, resolution)
                return
        finest = holding[-1] if holding else coarse_first[0][0]
        # The buckets whose middle is in [lo, hi): starts in [lo - r/2, hi - r/2), aligned.
        first = -(-(lo - finest / 2) // finest) * finest
        last = -(-(hi - finest / 2) // finest) * finest
        if first < last:
            out.append((finest, first, last))

    cover(start, end, 1 << 62)
    return out


def read_requests(
    conn: sqlite3.Connection, start: float, end: float, now: float, retention: float
) -> dict[Key, Counts]:
    """Request counts per entity over ``[start, end)`` (see :func:`tiles`)."""
    names = {entity: (kind, name) for entity, kind, name in conn.execute(
        "SELECT id, kind, name FROM entity")}
    sums: dict[int, list[int]] = {}
    for resolution, first, last in tiles(start, end, now, retention):
        for entity, *counts in conn.execute(
            "SELECT entity, sum(n0), sum(n1), sum(n2), sum(n3), sum(n4), sum(n5) FROM requests"
            " WHERE resolution = ? AND bucket >= ? AND bucket < ? GROUP BY entity",
            (resolution, first, last),
        ):
            total = sums.setdefault(entity, [0] * 6)
            for k, n in enumerate(counts):
                total[k] += n
    return {names[entity]: (c[0], c[1], c[2], c[3], c[4], c[5]) for entity, c in sums.items()}
