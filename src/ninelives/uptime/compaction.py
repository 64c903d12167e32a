"""Housekeeping of the uptime store, inside the writer's transaction: the retention
(rows older than it go, request buckets each as long as their resolution is kept) and the
compaction of old intervals (those that continue one another in the same class are
merged into the first, which keeps its state and reason, so incidents and their causes
are unchanged while a year of flapping stays a few rows). A row that holds a run (see
:mod:`ninelives.uptime.batch`) is already one row for many intervals: it is left as it is,
and nothing merges across it."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from ninelives.uptime import schema
from ninelives.uptime.availability import state_class
from ninelives.uptime.schema import LEVELS, Key


def housekeep(
    conn: sqlite3.Connection, kinds: Mapping[int, Key], now: float, retention: float,
    compact_after: float,
) -> None:
    horizon = now - retention
    conn.execute("DELETE FROM interval WHERE ended < ?", (horizon,))
    conn.execute("DELETE FROM changes WHERE time < ?", (horizon,))
    for resolution, keep in LEVELS:
        kept = retention if keep is None else min(keep, retention)
        conn.execute(
            "DELETE FROM requests WHERE resolution = ? AND bucket < ?",
            (resolution, now - kept - resolution),
        )
    compact(conn, kinds, now - compact_after)


def compact(conn: sqlite3.Connection, kinds: Mapping[int, Key], cut: float) -> int:
    """Merge intervals that ended by ``cut`` (and after the last compaction) into the
    interval before them when that one is of the same class and ends where they begin;
    return how many rows went. ``kinds``: every entity's (kind, name) by id."""
    since = schema.get_meta(conn, "compacted") or 0.0
    if cut <= since:
        return 0
    rows = conn.execute(
        "SELECT id, entity, state, started, ended, later IS NOT NULL FROM interval"
        " WHERE ended > ? AND ended <= ? ORDER BY entity, started",
        (since, cut),
    ).fetchall()
    ends: dict[int, float] = {}  # row -> its new end
    gone: list[tuple[int]] = []
    entity_now: int | None = None
    last: tuple[int, str, float] | None = None  # (row, class, end) of the run so far
    for row, entity, state, started, ended, run in rows:
        kind = kinds[entity][0]
        cls = state_class(kind, state)
        if run:
            entity_now, last = entity, None
            continue
        if entity != entity_now:
            entity_now = entity
            # Only an interval that ends where this one starts can take it in: found
            # by the index on ended.
            before = conn.execute(
                "SELECT id, state, ended FROM interval WHERE ended = ? AND entity = ?"
                " AND started < ? AND later IS NULL ORDER BY started DESC LIMIT 1",
                (started, entity, started),
            ).fetchone()
            last = None
            if before is not None and before[2] is not None:
                last = (before[0], state_class(kind, before[1]), before[2])
        if last is not None and last[1] == cls and last[2] == started:
            last = (last[0], cls, ended)
            ends[last[0]] = ended
            gone.append((row,))
        else:
            last = (row, cls, ended)
    conn.executemany("UPDATE interval SET ended = ? WHERE id = ?",
                     [(end, row) for row, end in ends.items()])
    conn.executemany("DELETE FROM interval WHERE id = ?", gone)
    schema.set_meta(conn, "compacted", cut)
    return len(gone)
