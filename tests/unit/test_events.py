"""The event log, and the events a pool publishes as its servers change state."""

from __future__ import annotations

import logging

import pytest

from ninelives.config import parse_config
from ninelives.events import Event, EventLog, LogBudget
from ninelives.pool import AdminState, Pool
from ninelives.states import Signal

CONFIG = """
listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]
pools:
  app:
    tiers:
      - provider: cloud-a
        servers: [{name: a1, address: 127.0.0.1:9001}, {name: a2, address: 127.0.0.1:9002}]
      - provider: cloud-b
        servers: [{name: b1, address: 127.0.0.1:9101}]
"""


def seen(log: EventLog, after: int = 0) -> list[tuple[str, str, str, str, str]]:
    return [(e.kind, e.entity, e.old, e.new, e.reason) for e in log.since(after)]


def make_pool() -> tuple[Pool, EventLog]:
    log = EventLog(clock=lambda: 1000.0)
    pool = Pool("app", parse_config(CONFIG).pools["app"], events=log)
    for server in pool.servers:
        pool.check_result(server, Signal.PASS, "1 check passed: HTTP 200")
    return pool, log


def test_first_checks_publish_each_server_and_the_pool_once() -> None:
    _, log = make_pool()
    assert seen(log) == [
        ("server", "app/a1", "unchecked", "up", "1 check passed: HTTP 200"),
        ("pool", "app", "unchecked", "up", "1 of 3 servers available"),
        ("server", "app/a2", "unchecked", "up", "1 check passed: HTTP 200"),
        ("server", "app/b1", "unchecked", "up", "1 check passed: HTTP 200"),
    ]
    assert log.since(0)[0] == Event(1, 1000.0, "server", "app/a1", "unchecked", "up",
                                    "1 check passed: HTTP 200")


def test_failover_to_the_backup_tier_and_back_is_published_with_reasons() -> None:
    pool, log = make_pool()
    mark = log.last_id
    pool.check_result(pool.by_name["a1"], Signal.FALL, "2 checks failed: connect refused")
    pool.set_admin_state("a2", AdminState.MAINT)
    pool.check_result(pool.by_name["a1"], Signal.RISE, "2 checks passed: HTTP 200")
    assert seen(log, mark) == [
        ("server", "app/a1", "up", "down", "2 checks failed: connect refused"),
        ("server", "app/a2", "up", "maint", "set by operator"),
        ("pool", "app", "up", "backup", "no server of cloud-a available; serving from cloud-b"),
        ("server", "app/a1", "down", "up", "2 checks passed: HTTP 200"),
        ("pool", "app", "backup", "up", "1 of 3 servers available"),
    ]


def test_nothing_available_is_a_down_pool_naming_each_server() -> None:
    pool, log = make_pool()
    mark = log.last_id
    for name in ("a1", "a2", "b1"):
        pool.check_result(pool.by_name[name], Signal.FALL, "2 checks failed: timeout")
    assert seen(log, mark)[-1] == (
        "pool", "app", "backup", "down", "no server available: a1 down, a2 down, b1 down"
    )
    assert pool.status()["state"] == "down"


def test_a_check_that_changes_nothing_publishes_nothing() -> None:
    pool, log = make_pool()
    mark = log.last_id
    pool.check_result(pool.by_name["a1"], Signal.PASS, "2 checks passed: HTTP 200")
    assert seen(log, mark) == []
    assert pool.by_name["a1"].reason == "2 checks passed: HTTP 200"


def test_the_log_keeps_the_most_recent_and_a_broken_subscriber_harms_nobody() -> None:
    log = EventLog(keep=3)
    got: list[int] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    log.subscribe(broken)
    log.subscribe(lambda e: got.append(e.id))
    for i in range(5):
        log.publish("node", "n", str(i), str(i + 1), "test")
    assert [e.id for e in log.since(0)] == [3, 4, 5]
    assert [e.id for e in log.since(4)] == [5]
    assert [e.id for e in log.since(0, limit=1)] == [3]
    assert got == [1, 2, 3, 4, 5]


def test_reconfigure_keeps_servers_with_their_state_and_operator_weights() -> None:
    pool, _ = make_pool()
    a1, a2 = pool.by_name["a1"], pool.by_name["a2"]
    pool.set_weight("a1", 9)
    pool.set_admin_state("a2", AdminState.DRAIN)
    a1.requests = 42
    moved = CONFIG.replace("127.0.0.1:9101", "127.0.0.1:9201").replace(
        "{name: a2, address: 127.0.0.1:9002}", "{name: a2, address: 127.0.0.1:9002, weight: 3}"
    )
    removed = pool.reconfigure(parse_config(moved).pools["app"])
    assert pool.by_name["a1"] is a1 and a1.weight == 9 and a1.requests == 42
    assert pool.by_name["a2"] is a2 and a2.state == "drain"
    assert (a2.weight, a2.config_weight) == (3, 3)  # not set by an operator: the config's
    b1 = pool.by_name["b1"]
    assert [s.name for s in removed] == ["b1"] and removed[0] is not b1
    assert b1.state == "unchecked" and str(b1.address) == "127.0.0.1:9201"


def test_the_log_budget_logs_the_first_of_each_second_and_counts_the_rest() -> None:
    budget = LogBudget(per_second=2)
    assert [budget.admit(t) for t in (10.0, 10.1, 10.2, 10.9)] == [0, 0, None, None]
    assert budget.admit(11.0) == 2  # the first of the next second says two were left out
    assert budget.admit(11.5) == 0
    assert budget.admit(11.6) is None


def test_events_beyond_the_budget_still_reach_subscribers_and_the_api(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [100.0]
    log = EventLog(clock=lambda: clock[0])
    log.log_budget.per_second = 3
    got: list[int] = []
    log.subscribe(lambda e: got.append(e.id))
    with caplog.at_level(logging.INFO, logger="ninelives.events"):
        for i in range(10):
            log.publish("server", f"app/s{i}", "up", "down", "2 checks failed")
        clock[0] = 101.0
        log.publish("server", "app/s0", "down", "up", "2 checks passed")
    assert got == list(range(1, 12))
    assert len(log.since(0)) == 11
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == [f"server app/s{i}: up -> down (2 checks failed)" for i in range(3)]
    assert messages[3] == ("7 events not logged (more than 3 a second); all are in the "
                           "uptime history")
    assert messages[4] == "server app/s0: down -> up (2 checks passed)"
    assert len(messages) == 5


def test_a_published_event_is_the_frozen_dataclass_its_fields_make() -> None:
    log = EventLog(clock=lambda: 1234.5)
    assert log.publish("server", "app/a1", "up", "down", "3 checks failed: timeout") == 1
    [event] = log.since(0)
    assert event == Event(1, 1234.5, "server", "app/a1", "up", "down",
                          "3 checks failed: timeout")
    assert hash(event) == hash(Event(1, 1234.5, "server", "app/a1", "up", "down",
                                     "3 checks failed: timeout"))
    assert event.as_dict()["reason"] == "3 checks failed: timeout"
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        event.new = "up"  # type: ignore[misc]


def test_subscribers_get_the_events_of_their_kinds_and_journals_every_event(
) -> None:
    log = EventLog(clock=lambda: 50.0)
    servers: list[Event] = []
    pools_and_listeners: list[str] = []
    journal: list[tuple[object, ...]] = []

    def write(*fields: object) -> None:
        journal.append(fields)

    log.subscribe(servers.append, ("server",))
    log.subscribe(lambda e: pools_and_listeners.append(e.entity), ("pool", "listener"))
    log.add_journal(write)
    log.publish("server", "app/a1", "up", "down", "2 checks failed: timeout")
    log.publish("pool", "app", "up", "down", "no server available: a1 down")
    log.publish("listener", "web", "listening", "closed", "closed 127.0.0.1:80")
    log.publish("node", "lb-1", "config 0", "config 1", "reloaded")
    assert servers == [Event(1, 50.0, "server", "app/a1", "up", "down",
                             "2 checks failed: timeout")]
    assert pools_and_listeners == ["app", "web"]
    assert journal == [
        (50.0, "server", "app/a1", "up", "down", "2 checks failed: timeout"),
        (50.0, "pool", "app", "up", "down", "no server available: a1 down"),
        (50.0, "listener", "web", "listening", "closed", "closed 127.0.0.1:80"),
        (50.0, "node", "lb-1", "config 0", "config 1", "reloaded"),
    ]
    log.remove_journal(write)
    log.unsubscribe(servers.append)
    log.publish("server", "app/a1", "down", "up", "2 checks passed")
    assert len(journal) == 4 and len(servers) == 1
    assert [e.id for e in log.since(3)] == [4, 5]
