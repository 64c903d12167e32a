"""kill -9 of a process while it records: nothing it reported as recorded is lost, and the
database is intact and opens again (20 times over, on the same database)."""

from __future__ import annotations

import os
import random
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from ninelives.uptime.store import UptimeStore
from tests.support.node import ROOT

ROUNDS = 20


def run_and_kill(path: Path, round_: int, commits: int) -> int:
    """Start a writer, kill it after ``commits`` commits; the last count it reported."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.uptime_writer", str(path), str(round_)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    seen = 0
    reported = 0
    buffer = b""
    deadline = time.monotonic() + 30
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while seen < commits:
                left = deadline - time.monotonic()
                assert left > 0, f"round {round_}: only {seen} commits in 30s"
                if not sel.select(left):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"writer exited: {proc.stderr.read() if proc.stderr else ''!r}"
                buffer += chunk
                seen = buffer.count(b"committed ")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    buffer += proc.stdout.read()  # what it printed before it died
    proc.stdout.close()
    if proc.stderr is not None:
        proc.stderr.close()
    for line in buffer.decode().splitlines():
        if line.startswith("committed "):
            reported = max(reported, int(line.split()[1]))
    return reported


def test_kill_9_while_recording_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "uptime.db"
    rng = random.Random(5)
    for round_ in range(ROUNDS):
        reported = run_and_kill(path, round_, rng.randint(1, 25))
        assert reported > 0
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            reasons = {r for (r,) in conn.execute(
                "SELECT reason FROM interval WHERE reason LIKE ?", (f"r{round_} event %",))}
            (samples,) = conn.execute(
                "SELECT coalesce(sum(n2), 0) FROM requests r JOIN entity e ON e.id = r.entity"
                " WHERE r.resolution = 10 AND e.name = ?", (f"app/r{round_}",)).fetchone()
            open_per_entity = conn.execute(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM interval WHERE ended IS NULL"
                " GROUP BY entity)").fetchone()[0]
        events = [n for n in range(1, reported + 1) if n % 10]
        missing = [n for n in events if f"r{round_} event {n}" not in reasons]
        assert not missing, f"round {round_}: reported {reported}, missing {missing[:10]}"
        assert samples >= reported // 10, (round_, reported, samples)
        assert open_per_entity in (None, 1), open_per_entity
    # The database opens again and accounts for the last kill.
    store = UptimeStore(path)
    resumed = store.open("writer")
    store.close()
    assert resumed.clean is False and resumed.reason.startswith("node not running: killed")
