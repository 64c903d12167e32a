"""The interval rows of one transaction, written in multi-row statements (real SQLite)."""

from __future__ import annotations

import sqlite3
from itertools import pairwise
from pathlib import Path

from ninelives.uptime import schema
from ninelives.uptime.batch import MAX_ROWS, IntervalWrites, chunks


def test_chunks_are_full_then_powers_of_two_and_cover_every_row() -> None:
    rows = list(range(2 * MAX_ROWS + 37))
    sizes = [len(c) for c in chunks(rows)]
    assert sizes == [MAX_ROWS, MAX_ROWS, 32, 4, 1]
    assert [r for c in chunks(rows) for r in c] == rows
    assert list(chunks([])) == []


def test_rows_opened_and_ended_in_one_batch_and_across_batches(tmp_path: Path) -> None:
    conn = schema.connect(tmp_path / "uptime.db")
    schema.create(conn)
    conn.execute("INSERT INTO entity (id, kind, name) VALUES (1, 'server', 'app/a1')")
    writes = IntervalWrites.after(conn)
    first = writes.open(1, "up", 10.0, "1 check passed")
    conn.execute("BEGIN")
    writes.write(conn)
    conn.execute("COMMIT")
    # The next batch ends the committed row and opens 300 more (more than two statements),
    # each ended by the next but the last.
    writes = IntervalWrites.after(conn)
    writes.end(first, 20.0)
    previous = None
    for n in range(300):
        row = writes.open(1, "down" if n % 2 == 0 else "up", 20.0 + n, f"change {n}")
        if previous is not None:
            writes.end(previous, 20.0 + n)
        previous = row
    conn.execute("BEGIN")
    writes.write(conn)
    conn.execute("COMMIT")
    got = conn.execute("SELECT id, state, started, ended, reason FROM interval ORDER BY id")
    rows = got.fetchall()
    conn.close()
    assert rows[0] == (first, "up", 10.0, 20.0, "1 check passed")
    assert len(rows) == 301
    assert [r[0] for r in rows] == list(range(first, first + 301))
    assert all(a[3] == b[2] for a, b in pairwise(rows[1:]))
    assert rows[-1][2:] == (319.0, None, "change 299")
    assert rows[1][1:] == ("down", 20.0, 21.0, "change 0")


def test_ids_continue_after_the_largest_in_the_table(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "uptime.db")
    schema.create(conn)
    conn.execute("INSERT INTO entity (id, kind, name) VALUES (1, 'pool', 'app')")
    conn.execute("INSERT INTO interval (id, entity, state, started, reason)"
                 " VALUES (41, 1, 'up', 1.0, 'x')")
    assert IntervalWrites.after(conn).open(1, "down", 2.0, "y") == 42
    conn.close()
