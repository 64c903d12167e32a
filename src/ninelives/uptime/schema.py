"""The uptime database: its tables, how a connection is opened, and the reads.

One SQLite file (``uptime.db`` under ``node.state_dir``) in WAL mode: the writer thread
(:mod:`ninelives.uptime.store`) commits while readers (``GET /v1/uptime``, in a worker
thread) read a consistent snapshot without waiting for it or blocking it.

Durability: ``synchronous=FULL``. In WAL mode ``NORMAL`` already survives the death of the
process (a committed transaction is in the WAL file, in the OS page cache, whatever happens
to the process) and never corrupts the database, but a power cut or kernel crash can roll
back the last transactions. With ``FULL`` every commit is fsynced before it is reported as
recorded, so "recorded" holds against power loss too. The cost is one fsync per commit,
paid by the writer thread, not the event loop, and shared by everything a commit batches.

Tables:

- ``entity``: every server (``app/a1``), pool, provider (``app/cloud-a``), listener and
  node, by kind and name; the others refer to it by id.
- ``interval``: an entity in one state from ``started`` to ``ended`` (NULL while it holds)
  with the reason of the transition that began it. One entity has at most one open interval.
- ``requests``: counts by status class (``n0`` no response, ``n1``..``n5``) per entity per
  time bucket, at several resolutions (:data:`LEVELS`), each kept as long as it is useful.
- ``changes``: state changes that are not availability (a node's config reloads).
- ``meta``: the schema version, the heartbeat (last time the node was seen alive), and
  whether it stopped cleanly.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

from ninelives.uptime.availability import Interval

SCHEMA_VERSION = 1
HOUR = 3600
DAY = 86_400

# (bucket seconds, how long kept; None: the configured retention). Every sample is added to
# a bucket of each resolution in the same transaction, so the coarse rows are the roll-up
# of the fine ones with no roll-up job that could run twice or half. Fine buckets answer
# short windows exactly (burn rates over 5 min and 1 h), coarse ones keep a year small:
# a busy entity has 720 + 1152 + 840 + 400 rows at any time.
LEVELS: tuple[tuple[int, float | None], ...] = (
    (10, 2 * HOUR),
    (300, 4 * DAY),
    (HOUR, 35 * DAY),
    (DAY, None),
)

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
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS interval_by_entity ON interval (entity, started);
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
    if row is None:
        conn.execute("INSERT INTO meta VALUES ('version', ?)", (SCHEMA_VERSION,))
    elif int(row[0]) > SCHEMA_VERSION:
        conn.execute("ROLLBACK")
        raise StoreError(f"written by a newer ninelives (schema {row[0]}; this one knows "
                         f"{SCHEMA_VERSION})")
    conn.execute("COMMIT")


def get_meta(conn: sqlite3.Connection, key: str) -> float | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: float | None) -> None:
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def read_intervals(conn: sqlite3.Connection, start: float, end: float) -> dict[Key, list[Interval]]:
    """Every interval that overlaps ``[start, end)``, by entity, in time order."""
    rows = conn.execute(
        "SELECT e.kind, e.name, i.state, i.started, i.ended, i.reason"
        " FROM interval i JOIN entity e ON e.id = i.entity"
        " WHERE (i.ended > ? OR i.ended IS NULL) AND i.started < ?"
        " ORDER BY i.entity, i.started",
        (start, end),
    )
    out: dict[Key, list[Interval]] = defaultdict(list)
    for kind, name, state, started, ended, reason in rows:
        out[kind, name].append(Interval(state, started, ended, reason))
    return dict(out)


def level_for(start: float, now: float, retention: float) -> int:
    """The finest bucket resolution that still holds ``start``."""
    for resolution, keep in LEVELS:
        if start >= now - (retention if keep is None else min(keep, retention)):
            return resolution
    return LEVELS[-1][0]


def read_requests(
    conn: sqlite3.Connection, start: float, end: float, now: float, retention: float
) -> dict[Key, Counts]:
    """Request counts per entity over ``[start, end)``, to the resolution of the buckets
    that still cover ``start`` (a bucket counts when its middle is inside the window)."""
    resolution = level_for(start, now, retention)
    half = resolution / 2
    rows = conn.execute(
        "SELECT e.kind, e.name, sum(n0), sum(n1), sum(n2), sum(n3), sum(n4), sum(n5)"
        " FROM requests r JOIN entity e ON e.id = r.entity"
        " WHERE r.resolution = ? AND r.bucket >= ? AND r.bucket < ?"
        " GROUP BY r.entity",
        (resolution, start - half, end - half),
    )
    return {(kind, name): tuple(counts) for kind, name, *counts in rows}  # type: ignore[misc]
