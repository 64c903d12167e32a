"""The interval rows of one transaction, written in multi-row statements (real SQLite)."""

from __future__ import annotations

import random
import sqlite3
from itertools import pairwise
from pathlib import Path

from ninelives.uptime import schema
from ninelives.uptime.batch import (
    MAX_PAIRS,
    MAX_ROWS,
    IntervalWrites,
    chunks,
    decode,
    encode,
    run_codes,
)
from ninelives.uptime.compaction import compact
from ninelives.uptime.journal import Journal
from ninelives.uptime.ledger import Ledger
from ninelives.uptime.wire import EVENT, SAMPLE


def test_chunks_are_full_then_powers_of_two_and_cover_every_row() -> None:
    rows = list(range(2 * MAX_ROWS + 37))
    sizes = [len(c) for c in chunks(rows)]
    assert sizes == [MAX_ROWS, MAX_ROWS, 32, 4, 1]
    assert [r for c in chunks(rows) for r in c] == rows
    assert list(chunks([])) == []


def test_run_codes_name_each_distinct_state_and_reason_and_read_back_through_encode(
) -> None:
    starts = [10.0 + n for n in range(6)]
    for states, reasons in (
        # each reason with one state (a flapping server), then one reason with two states
        (["down", "up", "down", "up", "down", "up"], ["failed", "passed"] * 3),
        (["down", "falling", "down", "up", "falling", "up"], ["x", "x", "y", "x", "y", "y"]),
    ):
        coded = run_codes(states, reasons)
        assert coded is not None
        pairs, codes = coded
        assert list(pairs) == list(dict.fromkeys(zip(states, reasons, strict=True)))
        assert list(pairs.values()) == list(range(len(pairs)))
        assert [list(pairs)[code] for code in codes] == list(zip(states, reasons, strict=True))
        assert decode(encode(starts, codes, tuple(pairs))) == list(
            zip(starts, states, reasons, strict=True))
    many = [f"reason {n}" for n in range(MAX_PAIRS + 1)]
    assert run_codes(["down"] * len(many), many) is None
    assert run_codes(["down"] * MAX_PAIRS, many[:MAX_PAIRS]) is not None


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


def test_a_flap_within_a_transaction_is_one_run_row_and_reads_back_interval_by_interval(
    tmp_path: Path,
) -> None:
    conn = schema.connect(tmp_path / "uptime.db")
    schema.create(conn)
    conn.execute("INSERT INTO entity (id, kind, name) VALUES (1, 'server', 'app/a1')")
    conn.execute("INSERT INTO entity (id, kind, name) VALUES (2, 'server', 'app/a2')")
    writes = IntervalWrites.after(conn)
    a1 = writes.transition(1, None, "up", 10.0, "1 check passed")
    a2 = writes.transition(2, None, "up", 10.0, "1 check passed")
    conn.execute("BEGIN")
    writes.write(conn)
    conn.execute("COMMIT")
    # The next transaction: a1 flaps 40 times within 0.4 s (two reasons, a third once),
    # then holds down; a2 changes once, after more than RUN_SPAN.
    writes = IntervalWrites.after(conn)
    changes = [(20.0 + n / 100, "down" if n % 2 == 0 else "up",
                "2 checks failed: timeout" if n % 2 == 0 else "2 checks passed")
               for n in range(40)]
    changes[7] = (changes[7][0], "up", "set by operator")
    row = a1
    for at, state, reason in changes:
        row = writes.transition(1, row, state, at, reason)
    assert writes.transition(2, a2, "down", 30.0, "2 checks failed") != a2
    conn.execute("BEGIN")
    writes.write(conn)
    conn.execute("COMMIT")
    stored = conn.execute("SELECT entity, count(*), sum(later IS NOT NULL) FROM interval"
                          " GROUP BY entity ORDER BY entity").fetchall()
    # a1: its interval of the last transaction, one run, its open interval; a2: two rows.
    assert stored == [(1, 3, 1), (2, 2, 0)]
    got = schema.read_intervals(conn, 0.0, 100.0)
    a1_read = [tuple(i[:4]) for i in got["server", "app/a1"]]
    expected = [("up", 10.0, 20.0, "1 check passed")]
    expected += [(state, at, nxt[0], reason)
                 for (at, state, reason), nxt in pairwise(changes)]
    expected += [(changes[-1][1], changes[-1][0], None, changes[-1][2])]
    assert a1_read == expected  # exact times: the starts are stored as doubles
    # A window inside the run reads the intervals that overlap it, no others.
    inside = schema.read_intervals(conn, 20.105, 20.125)["server", "app/a1"]
    assert [i[1] for i in inside] == [20.1, 20.11, 20.12]
    conn.close()


def test_a_database_of_schema_1_gains_runs_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "uptime.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value)")
        conn.execute("INSERT INTO meta VALUES ('version', 1)")
        conn.execute("CREATE TABLE entity (id INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
                     " name TEXT NOT NULL, UNIQUE (kind, name))")
        conn.execute("CREATE TABLE interval (id INTEGER PRIMARY KEY, entity INTEGER NOT NULL,"
                     " state TEXT NOT NULL, started REAL NOT NULL, ended REAL,"
                     " reason TEXT NOT NULL)")
        conn.execute("INSERT INTO entity VALUES (1, 'server', 'app/a1')")
        conn.execute("INSERT INTO interval VALUES (1, 1, 'up', 5.0, NULL, 'ok')")
    conn = sqlite3.connect(path)
    # Read before any node of this version opened it: as it is.
    assert schema.read_intervals(conn, 0.0, 10.0) == {("server", "app/a1"): [
        ("up", 5.0, None, "ok", 1)]}
    conn.close()
    conn = schema.connect(path)
    schema.create(conn)
    assert schema.get_meta(conn, "version") == schema.SCHEMA_VERSION == 2
    writes = IntervalWrites.after(conn)
    row = 1
    for n in range(3):
        row = writes.transition(1, row, "down" if n % 2 == 0 else "up", 6.0 + n / 10, "flap")
    conn.execute("BEGIN")
    writes.write(conn)
    conn.execute("COMMIT")
    assert [i[:3] for i in schema.read_intervals(conn, 0.0, 10.0)["server", "app/a1"]] == [
        ("up", 5.0, 6.0), ("down", 6.0, 6.1), ("up", 6.1, 6.2), ("down", 6.2, None)]
    conn.close()


def test_compaction_merges_around_a_run_and_leaves_the_run_as_it_is(tmp_path: Path) -> None:
    conn = schema.connect(tmp_path / "uptime.db")
    schema.create(conn)
    conn.execute("INSERT INTO entity (id, kind, name) VALUES (1, 'server', 'app/a1')")
    writes = IntervalWrites.after(conn)
    row = None
    for at, state, reason in [(0.0, "up", "ok"), (10.0, "falling", "1 check failed"),
                              (20.0, "down", "2 checks failed")]:
        row = writes.transition(1, row, state, at, reason)
    conn.execute("BEGIN")
    writes.write(conn)  # three rows: nothing else happened within a second
    conn.execute("COMMIT")
    writes = IntervalWrites.after(conn)
    for n in range(1, 10):  # a flap of 0.45 s: one run
        row = writes.transition(1, row, "up" if n % 2 else "down", 20.0 + n / 20, "flap")
    for at, state, reason in [(21.0, "up", "ok"), (31.0, "falling", "1 check failed"),
                              (41.0, "up", "ok")]:
        row = writes.transition(1, row, state, at, reason)
    conn.execute("BEGIN")
    writes.write(conn)
    conn.execute("COMMIT")
    before = schema.read_intervals(conn, 0.0, 100.0)["server", "app/a1"]
    conn.execute("BEGIN")
    gone = compact(conn, {1: ("server", "app/a1")}, 100.0)
    conn.execute("COMMIT")
    after = [tuple(i[:4]) for i in schema.read_intervals(conn, 0.0, 100.0)["server", "app/a1"]]
    assert gone == 2  # falling into the up before it, on each side of the run
    assert after[0] == ("up", 0.0, 20.0, "ok")
    # The down before the run, and the run's nine intervals, as they were.
    assert after[1:-2] == [tuple(i[:4]) for i in before[2:-3]]
    assert sum(1 for i in after if i[3] == "flap") == 9
    assert after[-2:] == [("up", 21.0, 41.0, "ok"), ("up", 41.0, None, "ok")]
    conn.close()


def reference(
    items: list[tuple[object, ...]],
) -> dict[tuple[object, object], list[tuple[object, ...]]]:
    """The intervals a transition at a time gives: each entity's, in order, each ending
    where the next starts (a start before the last one's is taken as that one's)."""
    out: dict[tuple[object, object], list[tuple[object, ...]]] = {}
    for _, at, kind, entity, _, new, reason in items:
        got = out.setdefault((kind, entity), [])
        if got:
            at = max(at, got[-1][1])  # type: ignore[call-overload]
            got[-1] = (*got[-1][:2], at, got[-1][3])
        got.append((new, at, None, reason))
    return out


def test_a_ledger_transaction_of_flaps_reads_back_as_one_transition_at_a_time(
    tmp_path: Path,
) -> None:
    rng = random.Random(3)
    conn = schema.connect(tmp_path / "uptime.db")
    schema.create(conn)
    ledger = Ledger(conn)
    ledger.load()
    items: list[tuple[object, ...]] = []
    at = 1000.0
    for batch in range(6):
        chunk: list[tuple[object, ...]] = []
        for _ in range(400):
            # Commits 0 to 3 flap within a second; the others, not all the time.
            at += 0.001 if batch < 4 else rng.choice([0.0005, 0.01, 0.3])
            server = 0 if batch == 1 else rng.randrange(8)
            # In commit 1, server 0 alone, with a reason of its own each time: too many
            # for one run.
            reason = f"reason {rng.randrange(3) if batch != 1 else at}"
            step_back = 0.05 if server == 7 and rng.random() < 0.1 else 0.0
            chunk.append((EVENT, at - step_back, "server", f"app/s{server}", "?",
                          rng.choice(["up", "down", "falling"]), reason))
            if batch == 3 and rng.random() < 0.2:  # a pool and a listener of one name
                chunk.append((EVENT, at, rng.choice(["pool", "listener"]), "web", "?",
                              rng.choice(["up", "down"]), reason))
        if batch == 2:  # a sample between two stretches of transitions of one commit
            chunk.insert(200, (SAMPLE, at, (("server", "app/s1", (0, 0, 1, 0, 0, 0)),)))
        # As the store's journal gathers them, and, for one commit, one at a time.
        journal = Journal()
        for item in chunk:
            if item[0] == EVENT:
                journal.event(*item[1:])  # type: ignore[arg-type]
            else:
                journal.put(item)
        sent, count = journal.take()
        assert count == len(chunk) and journal.take() == ([], 0)
        assert ledger.transaction(sent if batch != 5 else chunk, at) == (len(chunk), [])
        items += [item for item in chunk if item[0] == EVENT]
    got = schema.read_intervals(conn, 0.0, 1e12)
    expected = reference(items)
    assert set(got) == set(expected)
    assert ("pool", "web") in got and ("listener", "web") in got
    for key, intervals in expected.items():
        assert [tuple(i[:4]) for i in got[key]] == intervals, key  # type: ignore[index]
    rows, runs = conn.execute(
        "SELECT count(*), sum(later IS NOT NULL) FROM interval").fetchone()
    assert runs > 0 and rows < len(items) / 2  # flaps went in runs
    conn.close()
