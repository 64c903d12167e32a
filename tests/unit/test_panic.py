"""Panic on a Pool driven by hand: when it starts and ends, over which servers it balances,
how tiers, ejection, drain and maint weigh in, its log lines and status. No sockets."""

from __future__ import annotations

import logging

import pytest

from ninelives.config import parse_config
from ninelives.panic import judge
from ninelives.pool import AdminState, Pool, Server
from ninelives.states import Health, Signal


def make_pool(*tiers: int, pool_yaml: str = "") -> Pool:
    """A pool whose tier i has ``tiers[i]`` servers named t{i}s{j}."""
    listing = ", ".join(
        "{servers: [" + ", ".join(
            f"{{name: t{t}s{j}, address: 127.0.0.1:{9000 + 10 * t + j}}}" for j in range(size)
        ) + "]}"
        for t, size in enumerate(tiers)
    )
    cfg = parse_config(
        "listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]\n"
        f"pools: {{app: {{slow_start: 0s, tiers: [{listing}]{pool_yaml}}}}}\n",
        env={},
    )
    return Pool("app", cfg.pools["app"], initial=Health.UP)


def fails_check(pool: Pool, server: Server, answered: bool = True) -> None:
    """The server's check failed: with an answer (HTTP 503) or without (refused)."""
    pool.set_answering(server, answered)
    step = Signal.FALL if server.healthy else Signal.FAIL  # a down server stays down
    pool.check_result(server, step, "2 checks failed: HTTP 503" if answered else "refused")


def names(servers: tuple[Server, ...]) -> list[str]:
    return [s.name for s in servers]


def test_half_healthy_is_not_panic_below_half_is() -> None:
    pool = make_pool(4)
    s = pool.servers
    fails_check(pool, s[0])
    fails_check(pool, s[1])
    assert pool.panic == "" and names(pool.candidates) == ["t0s2", "t0s3"]
    fails_check(pool, s[2])
    assert pool.panic == (
        "1 of 4 servers of tier 0 healthy, below 50%; balancing over 4 that answer their checks"
    )
    # Servers passing their checks first (for `first`), then those failing them.
    assert names(pool.candidates) == ["t0s3", "t0s0", "t0s1", "t0s2"]
    assert pool.status()["panic"] is True
    assert pool.status()["panic_reason"] == pool.panic


def test_no_server_healthy_at_all_balances_over_those_that_answer() -> None:
    pool = make_pool(3)
    for server in pool.servers:
        fails_check(pool, server)
    assert names(pool.candidates) == ["t0s0", "t0s1", "t0s2"]
    assert pool.panic.startswith("0 of 3 servers of tier 0 healthy")


def test_servers_that_refuse_or_hang_are_never_balanced_over() -> None:
    pool = make_pool(4)
    s = pool.servers
    fails_check(pool, s[0], answered=False)  # connect refused
    fails_check(pool, s[1], answered=False)  # timed out
    fails_check(pool, s[2])  # HTTP 503
    assert names(pool.candidates) == ["t0s3", "t0s2"]
    assert "balancing over 2" in pool.panic
    fails_check(pool, s[2], answered=False)
    # Nobody left to add: not a panic, whatever the share.
    assert pool.panic == "" and names(pool.candidates) == ["t0s3"]


def test_a_down_server_that_starts_answering_joins_the_panic_at_its_next_check() -> None:
    pool = make_pool(3)
    s = pool.servers
    fails_check(pool, s[0], answered=False)
    fails_check(pool, s[1], answered=False)
    assert pool.panic == "" and names(pool.candidates) == ["t0s2"]
    pool.set_answering(s[0], True)  # its check now gets a 503 instead of a refusal
    assert names(pool.candidates) == ["t0s2", "t0s0"] and pool.panic


def test_ejected_servers_stay_out_so_a_right_check_narrows_the_panic() -> None:
    pool = make_pool(3, pool_yaml=", outlier: {max_ejected: 100%}")
    s = pool.servers
    fails_check(pool, s[0])
    fails_check(pool, s[1])
    assert names(pool.candidates) == ["t0s2", "t0s0", "t0s1"]
    for _ in range(3):
        pool.record_failure(s[0], 100.0, "status 503")  # live traffic: the check was right
    assert names(pool.candidates) == ["t0s2", "t0s1"]
    assert "1 of 3 servers" in pool.panic


def test_drain_maint_and_weight_zero_neither_count_nor_take_panic_traffic() -> None:
    pool = make_pool(5)
    s = pool.servers
    pool.set_admin_state("t0s0", AdminState.MAINT)
    pool.set_admin_state("t0s1", AdminState.DRAIN)
    pool.set_weight("t0s2", 0)
    fails_check(pool, s[3])
    # 1 of the 2 servers wanted is healthy: 50%, no panic.
    assert pool.panic == "" and names(pool.candidates) == ["t0s4"]
    for server in s[:3]:
        fails_check(pool, server)
    assert pool.panic == "" and names(pool.candidates) == ["t0s4"]


def test_a_backup_tier_healthy_enough_takes_it_instead_of_panic() -> None:
    pool = make_pool(4, 2)
    primary = pool.tiers[0]
    for server in primary[:3]:
        fails_check(pool, server)
    # The primary is weak, the backup fully healthy: no panic, the primary's survivor serves.
    assert pool.panic == "" and names(pool.candidates) == ["t0s3"]
    fails_check(pool, primary[3])
    assert pool.panic == "" and pool.active_tier == 1
    assert names(pool.candidates) == ["t1s0", "t1s1"]


def test_a_weak_backup_tier_does_not_stop_the_panic_of_the_primary() -> None:
    pool = make_pool(4, 3)
    primary, backup = pool.tiers
    for server in primary[:3]:
        fails_check(pool, server)
    fails_check(pool, backup[0])
    fails_check(pool, backup[1])
    assert pool.active_tier == 0
    assert names(pool.candidates) == ["t0s3", "t0s0", "t0s1", "t0s2"]


def test_with_no_server_healthy_anywhere_panic_uses_the_first_tier_that_answers() -> None:
    pool = make_pool(2, 2)
    primary, backup = pool.tiers
    for server in primary:
        fails_check(pool, server, answered=False)
    for server in backup:
        fails_check(pool, server)
    assert pool.active_tier is None
    assert names(pool.candidates) == ["t1s0", "t1s1"]
    assert pool.panic.startswith("0 of 2 servers of tier 1 healthy")


def test_panic_zero_never_panics() -> None:
    pool = make_pool(3, pool_yaml=", panic: 0%")
    for server in pool.servers:
        fails_check(pool, server)
    assert pool.panic == "" and pool.candidates == ()


def test_a_higher_threshold_panics_sooner() -> None:
    pool = make_pool(4, pool_yaml=", panic: 80%")
    fails_check(pool, pool.servers[0])
    assert "3 of 4 servers of tier 0 healthy, below 80%" in pool.panic


def test_retries_in_panic_go_to_a_healthy_server_first() -> None:
    pool = make_pool(3)
    s = pool.servers
    fails_check(pool, s[0])
    fails_check(pool, s[1])
    assert pool.fallback([s[0]]) is s[2]
    assert pool.fallback([s[0], s[2]]) is s[1]
    assert pool.fallback(list(s)) is None


def test_entering_and_leaving_panic_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    pool = make_pool(3)
    s = pool.servers
    with caplog.at_level(logging.WARNING, logger="ninelives.pool"):
        fails_check(pool, s[0])
        fails_check(pool, s[1])
        fails_check(pool, s[2])  # still in panic: no second line
        pool.check_result(s[0], Signal.RISE, "2 checks passed: HTTP 200")
        pool.check_result(s[1], Signal.RISE, "2 checks passed: HTTP 200")
    assert [r.getMessage() for r in caplog.records] == [
        "pool app in panic: 1 of 3 servers of tier 0 healthy, below 50%; "
        "balancing over 3 that answer their checks",
        "pool app out of panic: 2 of 3 servers of tier 0 healthy",
    ]


def test_a_lone_server_that_passed_one_check_of_its_rise_is_used_in_panic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = make_pool(1)
    (server,) = pool.servers
    fails_check(pool, server, answered=False)  # dead: nothing to balance over
    assert pool.panic == "" and pool.candidates == ()
    with caplog.at_level(logging.WARNING, logger="ninelives.pool"):
        pool.set_answering(server, True)  # restarted: one check passed, rise not reached yet
        assert pool.candidates == (server,)  # better than a 503 for every request
        pool.check_result(server, Signal.RISE, "2 checks passed: HTTP 200")
    assert [r.getMessage() for r in caplog.records] == [
        "pool app in panic: 0 of 1 server of tier 0 healthy, below 50%; "
        "balancing over 1 that answer their checks",
        "pool app out of panic: 1 of 1 server of tier 0 healthy",
    ]


def test_judge_is_a_pure_function_of_the_tiers() -> None:
    pool = make_pool(2)
    a, b = pool.servers
    a.health, a.answering = Health.DOWN, True
    b.health, b.answering = Health.DOWN, True
    verdict = judge(pool.tiers, None, 0.5)
    assert verdict is not None and verdict.servers == (a, b)
    assert judge(pool.tiers, None, 0.0) is None
    b.health = Health.UP
    assert judge(pool.tiers, 0, 0.5) is None  # 1 of 2: not below half
