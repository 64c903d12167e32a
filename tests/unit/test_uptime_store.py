"""The uptime store: intervals, request buckets, the gap a restart finds, retention."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from ninelives.cluster.coverage import Coverage
from ninelives.config import parse_config
from ninelives.events import Event, EventLog
from ninelives.uptime import schema
from ninelives.uptime.availability import Interval, summarise, timeline
from ninelives.uptime.recorder import UptimeRecorder
from ninelives.uptime.schema import Key, StoreError
from ninelives.uptime.store import COMPACT_AFTER, UptimeStore
from tests.support.node import wait_until

T0 = 1_750_000_000.0
DAY = 86_400.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[UptimeStore]:
    s = UptimeStore(tmp_path / "uptime.db", clock=clock)
    s.open("lb-1")
    yield s
    s.close()


def event(n: int, at: float, kind: str, entity: str, old: str, new: str, reason: str) -> Event:
    return Event(n, at, kind, entity, old, new, reason)  # type: ignore[arg-type]


def intervals(store: UptimeStore, start: float, end: float) -> dict[Key, list[Interval]]:
    """The store's intervals as Interval values (it reads them with the entity's id)."""
    return {key: [Interval(*row[:4]) for row in got]
            for key, got in store.intervals(start, end).items()}


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql))


def test_an_attached_log_has_every_event_recorded_until_the_store_closes(
    tmp_path: Path, clock: Clock
) -> None:
    store = UptimeStore(tmp_path / "uptime.db", clock=clock)
    store.open("lb-1")
    events = EventLog(clock=clock)
    store.attach(events)
    try:
        for n in range(1, 501):  # more than the feeder takes at once when it wakes
            clock.now = T0 + n
            events.publish("server", f"app/s{n % 5}", "?", "down" if n % 2 else "up",
                           f"check {n}")
        assert store.flush()
        assert store.recorded == 500
    finally:
        store.close()
    assert events.journals == []
    events.publish("server", "app/s0", "?", "up", "after the close: not recorded")
    got = intervals(store, T0, T0 + 1000)
    assert sorted(got) == [("server", f"app/s{k}") for k in range(5)]
    assert sum(map(len, got.values())) == 500
    assert got["server", "app/s0"][-1] == Interval("up", T0 + 500, None, "check 500")
    assert [i.start for i in got["server", "app/s1"]] == [T0 + n for n in range(1, 501, 5)]


def test_events_become_intervals_and_reloads_become_changes(store: UptimeStore) -> None:
    store.record(event(1, T0, "server", "app/a1", "unchecked", "up", "1 check passed"))
    store.record(event(2, T0 + 10, "server", "app/a1", "up", "down", "2 checks failed"))
    store.record(event(3, T0 + 11, "node", "lb-1", "config 0", "config 1", "reloaded: x"))
    store.record(event(4, T0 + 12, "listener", "web", "closed", "listening", "bound :8080"))
    assert store.flush()
    assert store.recorded == 4
    assert intervals(store, T0 - 1, T0 + 100) == {
        ("server", "app/a1"): [
            Interval("up", T0, T0 + 10, "1 check passed"),
            Interval("down", T0 + 10, None, "2 checks failed"),
        ],
        ("listener", "web"): [Interval("listening", T0 + 12, None, "bound :8080")],
    }
    assert intervals(store, T0 + 10.5, T0 + 11) == {
        ("server", "app/a1"): [Interval("down", T0 + 10, None, "2 checks failed")],
    }
    assert rows(store.path, "SELECT kind, entity, old, new FROM changes") == [
        ("node", "lb-1", "config 0", "config 1")]
    assert rows(store.path, "PRAGMA journal_mode") == [("wal",)]
    only = store.intervals(T0 - 1, T0 + 100, [("listener", "web"), ("pool", "none")])
    assert {key: [Interval(*row[:4]) for row in got] for key, got in only.items()} == {
        ("listener", "web"): [Interval("listening", T0 + 12, None, "bound :8080")]}
    assert store.intervals(T0 + 10.5, T0 + 11, [("server", "app/a1")])[
        "server", "app/a1"][0][:3] == ("down", T0 + 10, None)


def test_request_counts_are_kept_at_every_resolution(store: UptimeStore, clock: Clock) -> None:
    store.add_counts(T0 + 1, [("listener", "web", (0, 0, 10, 0, 1, 0))])
    store.add_counts(T0 + 3, [("listener", "web", (1, 0, 5, 0, 0, 2))])
    store.add_counts(T0 + 25, [("listener", "web", (0, 0, 7, 0, 0, 0)),
                               ("server", "app/a1", (0, 0, 7, 0, 0, 0))])
    assert store.flush()
    by_resolution = rows(store.path, "SELECT resolution, count(*), sum(n2) FROM requests"
                                     " WHERE entity = 1 GROUP BY resolution")
    assert by_resolution == [(10, 2, 22), (300, 1, 22), (3600, 1, 22), (86400, 1, 22),
                             (604800, 1, 22)]
    clock.now = T0 + 60
    assert store.requests(T0 - 5, T0 + 60, clock.now) == {
        ("listener", "web"): (1, 0, 22, 0, 1, 2),
        ("server", "app/a1"): (0, 0, 7, 0, 0, 0),
    }
    # The 10 s buckets from T0 to T0 + 20 (T0 is a multiple of 10).
    assert store.requests(T0, T0 + 20, clock.now)["listener", "web"] == (1, 0, 15, 0, 1, 2)
    assert store.requests(T0 + 20, T0 + 30, clock.now)["listener", "web"] == (0, 0, 7, 0, 0, 0)


def test_a_window_is_read_as_coarse_buckets_inside_and_fine_ones_at_its_edges() -> None:
    now = 1_750_000_000.0 + 1234.5
    year = schema.tiles(now - 365 * DAY, now, now, 400 * DAY)
    by_resolution: dict[int, float] = {}
    for resolution, first, last in year:
        by_resolution[resolution] = by_resolution.get(resolution, 0) + (last - first)
    assert set(by_resolution) == {10, 300, 3600, 86400, 604800}
    assert by_resolution[604800] >= 51 * 7 * DAY
    assert sum(by_resolution.values()) == pytest.approx(365 * DAY, abs=DAY)
    # Tiles do not overlap and the recent edge is exact to 10 s.
    spans = sorted((first, last) for _, first, last in year)
    assert all(a[1] <= b[0] for a, b in pairwise(spans))
    assert spans[-1][1] == pytest.approx(now, abs=10)
    # A window older than the fine buckets: days at its edges, a bucket counted when its
    # middle is inside.
    old = schema.tiles(now - 100 * DAY, now - 90 * DAY + 3600, now, 400 * DAY)
    assert {resolution for resolution, _, _ in old} <= {86400, 604800}
    # One hour ago, for an hour: 10 s buckets only (or 5 min and 10 s at the edges).
    recent = schema.tiles(now - 3600, now, now, 400 * DAY)
    assert {resolution for resolution, _, _ in recent} <= {10, 300}


def test_a_killed_node_is_down_from_its_last_heartbeat_until_it_serves_again(
    tmp_path: Path, clock: Clock
) -> None:
    first = UptimeStore(tmp_path / "uptime.db", clock=clock)
    assert first.open("lb-1").last_alive is None
    first.mark("node", "lb-1", "up", "serving", T0)
    first.record(event(1, T0, "listener", "web", "closed", "listening", "bound :8080"))
    first.record(event(2, T0, "server", "app/a1", "unchecked", "up", "ok"))
    clock.now = T0 + 10
    first.close()  # without stop(): as if the process was killed after its last commit

    clock.now = T0 + 100
    second = UptimeStore(tmp_path / "uptime.db", clock=clock)
    resumed = second.open("lb-1")
    assert (resumed.last_alive, resumed.clean) == (T0 + 10, False)
    assert resumed.reason.startswith("node not running: killed or crashed (last heartbeat")
    assert "not running for 90.000s" in resumed.describe(T0 + 100)
    second.record(event(1, T0 + 104, "listener", "web", "closed", "listening", "bound :8080"))
    second.mark("node", "lb-1", "up", "serving", T0 + 105)
    assert second.flush()
    second.close()
    got = intervals(second, T0, T0 + 200)
    assert got["server", "app/a1"] == [Interval("up", T0, T0 + 10, "ok")]
    assert got["listener", "web"] == [
        Interval("listening", T0, T0 + 10, "bound :8080"),
        Interval("down", T0 + 10, T0 + 104, resumed.reason),
        Interval("listening", T0 + 104, None, "bound :8080"),
    ]
    node = summarise(timeline("node", got["node", "lb-1"], T0 + 200), [], T0, T0 + 200,
                     T0 + 200)
    assert node.down_s == 95 and node.up_s == 105
    assert node.incidents[0].cause == resumed.reason


def first_run(path: Path, clock: Clock, stopped_at: float | None) -> None:
    """lb-1 serves from T0 (the node, the cluster, listener web), then stops at
    ``stopped_at``, or is killed (None) after its last commit at ``clock.now``."""
    first = UptimeStore(path, clock=clock)
    first.open("lb-1")
    first.mark("node", "lb-1", "up", "serving", T0)
    first.mark("cluster", "cluster", "serving", "lb-1 serves", T0)
    first.record(event(1, T0, "listener", "web", "closed", "listening", "bound :8080"))
    if stopped_at is not None:
        first.stop("lb-1", stopped_at)
    first.close()  # without stop(): as if the process was killed after its last commit


def test_a_clean_stop_is_recorded_as_stopped(tmp_path: Path, clock: Clock) -> None:
    first_run(tmp_path / "uptime.db", clock, stopped_at=T0 + 50)
    clock.now = T0 + 80
    second = UptimeStore(tmp_path / "uptime.db", clock=clock)
    resumed = second.open("lb-1")
    assert (resumed.last_alive, resumed.clean) == (T0 + 50, True)
    second.close()
    got = intervals(second, T0, T0 + 100)
    assert got["listener", "web"][-1] == Interval("down", T0 + 50, None,
                                                  "node not running: stopped")
    assert got["node", "lb-1"][-1] == Interval("down", T0 + 50, None, "node not running: stopped")
    assert rows(second.path, "SELECT value FROM meta WHERE key = 'stopped'") == [(None,)]


def test_entities_no_longer_configured_end_their_intervals(store: UptimeStore) -> None:
    store.record(event(1, T0, "server", "app/a1", "unchecked", "up", "ok"))
    store.record(event(2, T0, "server", "app/a2", "unchecked", "up", "ok"))
    store.retire({("server", "app/a1")}, {"server"}, T0 + 5)
    assert store.flush()
    got = intervals(store, T0, T0 + 10)
    assert got["server", "app/a2"] == [Interval("up", T0, T0 + 5, "ok")]
    assert got["server", "app/a1"] == [Interval("up", T0, None, "ok")]


def test_recording_never_waits_for_the_disk(store: UptimeStore) -> None:
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        for n in range(1, 1001):
            store.record(event(n, T0 + n, "server", "app/a1", "up", "down", f"event {n}"))
        # Every call returned while nothing could be committed.
        assert store.recorded == 0 and store.pending + 1 >= 1
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.flush(timeout=60)
    assert store.recorded == 1000


def test_retention_and_compaction(tmp_path: Path, clock: Clock) -> None:
    start = T0 - 40 * DAY
    # The history below is written after the fact; the store's own housekeeping at open
    # (which may land between two batches of it) must see a clock from before all of it,
    # or it would count that history as compacted already.
    clock.now = start
    store = UptimeStore(tmp_path / "uptime.db", retention=30 * DAY, clock=clock)
    store.open("lb-1")
    changes = [(start, "up", "ok")]
    # Ten days of flapping between up and falling, with one outage, then quiet.
    for hour in range(240):
        base = start + 5 * DAY + hour * 3600
        changes += [(base, "falling", "1 check failed"), (base + 60, "up", "ok")]
    changes.insert(100, (start + 5 * DAY + 49.5 * 3600, "down", "2 checks failed"))
    changes.insert(101, (start + 5 * DAY + 49.7 * 3600, "rising", "1 check passed"))
    changes.sort()
    for n, (at, state, reason) in enumerate(changes):
        store.record(event(n, at, "server", "app/a1", "?", state, reason))
    store.add_counts(start, [("server", "app/a1", (0, 0, 5, 0, 0, 0))])
    store.add_counts(T0 - 1, [("server", "app/a1", (0, 0, 3, 0, 0, 0))])
    assert store.flush()
    clock.now = T0
    before = intervals(store, start, T0)["server", "app/a1"]
    summary_before = summarise(timeline("server", before, T0), [], T0 - 20 * DAY, T0, T0)
    store.housekeep()
    assert store.flush()
    after = intervals(store, start, T0)["server", "app/a1"]
    # Older than the retention (30 days): gone. Up to a week old: merged by class.
    assert after[0].start >= T0 - 30 * DAY - 3600 and after[0].state == "up"
    assert len(after) < len(before) / 10
    summary_after = summarise(timeline("server", after, T0), [], T0 - 20 * DAY, T0, T0)
    assert summary_after == summary_before
    assert rows(store.path, "SELECT resolution, sum(n2) FROM requests GROUP BY resolution") == [
        (10, 3), (300, 3), (3600, 3), (86400, 3), (604800, 3)]
    assert COMPACT_AFTER == 7 * DAY
    store.close()


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "uptime.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value)")
        conn.execute("INSERT INTO meta VALUES ('version', 99)")
    with pytest.raises(StoreError, match="newer ninelives"):
        UptimeStore(path).open("lb-1")


def test_a_node_serves_without_history_when_the_store_cannot_be_opened(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = parse_config(f"""
node: {{name: lb-1, state_dir: {blocker}/state}}
listeners: [{{name: web, bind: 127.0.0.1:0, pool: app}}]
pools: {{app: {{servers: [{{name: a1, address: 127.0.0.1:9001}}]}}}}
""", env={})
    events = EventLog()
    recorder = UptimeRecorder.open(config, events)
    assert recorder.store is None and "cannot use" in recorder.problem
    assert events.journals == []


def test_a_read_is_one_snapshot_while_new_entities_are_recorded(store: UptimeStore) -> None:
    # Entities and their intervals are read in one transaction: an interval of an entity
    # committed between the two reads would otherwise have no name.
    for n in range(3000):
        store.record(event(n, T0 + n, "server", f"app/s{n}", "unchecked", "up", "ok"))
        if n % 15 == 0:
            intervals_now, _ = store.read(T0 - 1, T0 + 10_000, T0 + 10_000)
            assert all(kind == "server" for kind, _ in intervals_now)
    assert store.flush()
    assert len(store.read(T0 - 1, T0 + 10_000, T0 + 10_000)[0]) == 3000


def test_a_lone_event_commits_at_once_and_a_flush_does_not_wait_for_the_commit_gap(
    tmp_path: Path, clock: Clock
) -> None:
    # Every commit is followed by the gap (a burst of one), so the 1,000 wait for it.
    store = UptimeStore(tmp_path / "uptime.db", clock=clock, commit_gap=60.0, burst=1)
    store.open("lb-1")
    try:
        store.record(event(1, T0, "server", "app/a1", "unchecked", "up", "checked"))
        # The writer was idle: no gap before this commit.
        wait_until(lambda: store.recorded >= 1, timeout=10,
                   message="a lone event committed without waiting for the gap")
        began = time.monotonic()
        for n in range(2, 1002):  # within the gap after that commit: one batch
            store.record(event(n, T0 + n, "server", "app/a1", "?", "down" if n % 2 else "up",
                               f"change {n}"))
        assert store.flush(timeout=10)
        assert time.monotonic() - began < 10
        assert store.recorded == 1001
    finally:
        store.close()
    got = intervals(store, T0, T0 + 2000)[("server", "app/a1")]
    assert len(got) == 1001
    assert all(a.end == b.start for a, b in pairwise(got))


@pytest.mark.parametrize(("served_since", "expected"), [
    # Another node served before this one stopped: the whole gap is elsewhere.
    (T0 + 10, [Interval("elsewhere", T0 + 50, None,
                        "node not running: stopped; lb-2 served meanwhile")]),
    # It took over 20 s after the stop: down until then, elsewhere from then.
    (T0 + 70, [Interval("down", T0 + 50, T0 + 70, "node not running: stopped"),
               Interval("elsewhere", T0 + 70, None,
                        "node not running: stopped; lb-2 served meanwhile")]),
])
def test_after_a_clean_stop_the_time_another_node_served_is_not_down(
    tmp_path: Path, clock: Clock, served_since: float, expected: list[Interval]
) -> None:
    first_run(tmp_path / "uptime.db", clock, stopped_at=T0 + 50)
    clock.now = T0 + 80
    second = UptimeStore(tmp_path / "uptime.db", clock=clock)
    resumed = second.open("lb-1", Coverage(served_since, "lb-2"))
    second.close()
    assert resumed.served == Coverage(served_since, "lb-2")
    got = intervals(second, T0, T0 + 100)
    for key in (("listener", "web"), ("cluster", "cluster")):
        assert got[key][1:] == expected, key
    assert got["node", "lb-1"][-1] == Interval("down", T0 + 50, None, "node not running: stopped")


def test_after_a_kill_the_time_another_node_served_is_not_down(
    tmp_path: Path, clock: Clock
) -> None:
    clock.now = T0 + 10
    first_run(tmp_path / "uptime.db", clock, stopped_at=None)
    clock.now = T0 + 30
    second = UptimeStore(tmp_path / "uptime.db", clock=clock)
    second.open("lb-1", Coverage(T0 + 90, "lb-2"))  # a peer's clock ahead: from now on
    second.close()
    got = intervals(second, T0, T0 + 100)
    down, elsewhere = got["listener", "web"][1:]
    assert (down.state, down.start, down.end) == ("down", T0 + 10, T0 + 30)
    assert (elsewhere.state, elsewhere.start, elsewhere.end) == ("elsewhere", T0 + 30, None)
    assert elsewhere.reason.endswith("; lb-2 served meanwhile")
    assert got["node", "lb-1"][-1].state == "down"


def test_a_writer_that_dies_is_reported_and_recording_goes_on_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = UptimeStore(tmp_path / "uptime.db")
    store.open("lb-1")
    events = EventLog()
    store.attach(events)
    try:
        store.record(event(1, T0, "server", "app/a1", "unchecked", "up", "ok"))
        assert store.flush()
        pid = store.writer_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: store.last_error, timeout=10, message="the writer's death noticed")
        assert store.last_error.startswith("the writer process exited (-9)")
        assert "the writer process exited" in caplog.text
        store.record(event(2, T0 + 1, "server", "app/a1", "up", "down", "ignored"))  # no error
        assert store.flush(timeout=1) is False
        assert store.recorded == 1
        assert events.journals == []  # the log's events are no longer queued for nobody
        events.publish("server", "app/a1", "down", "up", "ignored too")
        assert store.pending == 0
    finally:
        store.close()
    assert [i.reason for i in intervals(store, T0, T0 + 10)["server", "app/a1"]] == ["ok"]


def test_the_writer_exits_when_the_node_closes_its_input(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path / "uptime.db")
    store.open("lb-1")
    pid = store.writer_pid
    store.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid or 0, os.WNOHANG)  # exited and reaped by close


def test_the_writer_runs_at_the_lowest_cpu_priority(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path / "uptime.db")
    store.open("lb-1")
    try:
        assert store.flush()  # the writer has answered: it is past its start
        pid = store.writer_pid
        assert pid is not None
        # /proc/PID/stat field 19 is the nice value; the comm field may hold spaces.
        nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        assert nice == min(19, os.nice(0) + 19)
    finally:
        store.close()
