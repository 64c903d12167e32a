"""kill -9 of a process while it records: nothing it reported as recorded is lost, the
database is intact and opens again (20 times over, on the same database), and the store's
writer process does not outlive it."""

from __future__ import annotations

import os
import random
import re
import selectors
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ninelives.events import Event
from ninelives.uptime import schema
from ninelives.uptime.store import Resumed, UptimeStore
from tests.support.node import ROOT, wait_until

ROUNDS = 20


@dataclass
class Killed:
    reported: int  # the last count of committed items it printed
    writer: int  # the pid of its store's writer process


def run_and_kill(path: Path, round_: int, commits: int,
                 before_kill: Callable[[], object] | None = None) -> Killed:
    """Start a recording process, kill it after ``commits`` commits (and after running
    ``before_kill``, when given)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.uptime_writer", str(path), str(round_)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    seen = 0
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
        if before_kill is not None:
            before_kill()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    buffer += proc.stdout.read()  # what it printed before it died
    proc.stdout.close()
    if proc.stderr is not None:
        proc.stderr.close()
    text = buffer.decode()
    writer = re.search(r"^ready writer (\d+)$", text, re.MULTILINE)
    assert writer is not None, text[:200]
    reported = max((int(line.split()[1]) for line in text.splitlines()
                    if line.startswith("committed ")), default=0)
    return Killed(reported, int(writer.group(1)))


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by its new parent counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def check(path: Path, round_: int, reported: int) -> None:
    """Every item reported as committed is there; the database is intact; no entity has
    two intervals open."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        reasons = {interval[3] for got in schema.read_intervals(conn, 0, 1e300).values()
                   for interval in got}  # with those of runs (a row for many)
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


def test_kill_9_while_recording_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "uptime.db"
    rng = random.Random(5)
    for round_ in range(ROUNDS):
        killed = run_and_kill(path, round_, rng.randint(1, 25))
        assert killed.reported > 0
        # Its writer commits what it was sent, then exits: none is left behind.
        wait_until(partial(gone, killed.writer), timeout=30,
                   message=f"round {round_}: the writer {killed.writer} exits")
        check(path, round_, killed.reported)
    # The database opens again and accounts for the last kill.
    store = UptimeStore(path)
    resumed = store.open("writer")
    store.close()
    assert resumed.clean is False and resumed.reason.startswith("node not running: killed")


def test_a_node_started_again_waits_for_the_writer_of_the_one_killed(tmp_path: Path) -> None:
    """Another connection holds the database's write lock when the node is killed, so its
    writer cannot commit what it was last sent; a store opened meanwhile waits for that
    writer to commit and exit before it accounts for the gap: every interval of the killed
    run is closed by the resume, none left open by a late commit."""
    path = tmp_path / "uptime.db"
    blocker = sqlite3.connect(path, timeout=30, isolation_level=None)
    opened: list[Resumed] = []
    second = UptimeStore(path)
    try:
        killed = run_and_kill(path, 0, 5, before_kill=lambda: blocker.execute("BEGIN IMMEDIATE"))
        opening = threading.Thread(target=lambda: opened.append(second.open("writer")))
        opening.start()
        blocker.execute("ROLLBACK")
        opening.join(60)
        assert opened, "the second store did not open"
        wait_until(lambda: gone(killed.writer), timeout=10, message="the old writer exits")
        with sqlite3.connect(path) as conn:
            left_open = conn.execute("SELECT count(*) FROM interval WHERE ended IS NULL"
                                     " AND reason LIKE 'r0 event %'").fetchone()[0]
        assert left_open == 0
        for n in range(7):  # every entity the killed node recorded moves on
            second.record(Event(n, time.time(), "server", f"app/s{n}", "?", "up", "again"))
        assert second.flush()
    finally:
        second.close()
        blocker.close()
    assert opened[0].clean is False
    check(path, 0, killed.reported)
