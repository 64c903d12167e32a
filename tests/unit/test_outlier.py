"""Outlier ejection and the retry budget, on a Pool with a hand-driven clock (no sockets),
and the config of both."""

from __future__ import annotations

import pytest

from ninelives.config import ConfigError, parse_config
from ninelives.pool import Pool, Server
from ninelives.states import Health, Signal


def make_pool(servers: int = 4, pool_yaml: str = "") -> Pool:
    entries = ", ".join(f"{{name: s{i}, address: 127.0.0.1:{9000 + i}}}" for i in range(servers))
    cfg = parse_config(
        "listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]\n"
        f"pools: {{app: {{servers: [{entries}]{pool_yaml}}}}}\n",
        env={},
    )
    return Pool("app", cfg.pools["app"], initial=Health.UP)


def fail(pool: Pool, server: Server, times: int, now: float = 100.0) -> list[bool]:
    return [pool.record_failure(server, now, "connect: connection refused") for _ in range(times)]


def test_three_consecutive_failures_eject_and_the_server_leaves_the_candidates() -> None:
    pool = make_pool()
    s0 = pool.servers[0]
    assert fail(pool, s0, 3) == [False, False, True]
    assert s0.ejected and s0.state == "ejected"
    assert s0 not in pool.candidates and len(pool.candidates) == 3
    assert s0.reason.startswith("ejected for 10s: 3 consecutive failures, last: connect")
    assert s0.ejected_until == 110.0


def test_a_good_response_between_failures_starts_a_new_streak() -> None:
    pool = make_pool()
    s0 = pool.servers[0]
    assert fail(pool, s0, 2) == [False, False]
    s0.responses[2] += 1  # a 2xx came back
    assert fail(pool, s0, 2) == [False, False]
    assert not s0.ejected
    assert fail(pool, s0, 1) == [True]


def test_ejection_time_grows_with_each_ejection_up_to_the_cap() -> None:
    pool = make_pool(pool_yaml=", outlier: {ejection: 10s, max_ejection: 25s}")
    s0 = pool.servers[0]
    until = []
    for round_no in range(3):
        now = 1000.0 * (round_no + 1)
        fail(pool, s0, 3, now)
        until.append(s0.ejected_until - now)
        pool.expire_ejections(s0.ejected_until)
        assert not s0.ejected and s0 in pool.candidates
    assert until == [10.0, 20.0, 25.0]
    assert s0.times_ejected == 3 and pool.ejections == 3


def test_expiry_waits_for_the_time() -> None:
    pool = make_pool()
    s0 = pool.servers[0]
    fail(pool, s0, 3, now=100.0)
    pool.expire_ejections(109.9)
    assert s0.ejected
    pool.expire_ejections(110.0)
    assert not s0.ejected and s0.state == "up"


def test_max_ejected_caps_the_share_of_the_pool_ejected_at_once() -> None:
    pool = make_pool(servers=4)  # 50% of 4: two at most
    results = [fail(pool, s, 3)[-1] for s in pool.servers]
    assert results == [True, True, False, False]
    assert len(pool.candidates) == 2


def test_one_server_may_always_be_ejected_even_in_a_small_pool() -> None:
    pool = make_pool(servers=1, pool_yaml=", outlier: {max_ejected: 10%}")
    assert fail(pool, pool.servers[0], 3)[-1] is True


def test_disabled_outlier_detection_never_ejects() -> None:
    pool = make_pool(pool_yaml=", outlier: {enabled: false}")
    assert fail(pool, pool.servers[0], 10) == [False] * 10


def test_the_retry_budget_is_a_share_of_active_requests_with_a_floor() -> None:
    pool = make_pool(pool_yaml=", retries: {budget: 20%, min_retries: 3}")
    for server in pool.servers:
        server.active = 10  # 40 in flight: 20% is 8
    pool.retrying = 7
    assert pool.may_retry()
    pool.retrying = 8
    assert not pool.may_retry()
    for server in pool.servers:
        server.active = 0  # nothing in flight: the floor of 3 still holds
    pool.retrying = 2
    assert pool.may_retry()
    pool.retrying = 3
    assert not pool.may_retry()


def test_retry_defaults_and_status_conditions() -> None:
    pool = make_pool()
    retries = pool.config.retries
    assert (retries.attempts, retries.budget, retries.max_body) == (2, 0.2, 64 * 1024)
    assert pool.max_tries == 3
    assert pool.retry_methods == {b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"}
    assert retries.retries_status(503) and not retries.retries_status(500)
    custom = make_pool(pool_yaml=", retries: {on: [connect-failure, 5xx], methods: [get]}")
    assert custom.config.retries.retries_status(500)
    assert custom.retry_on == {"connect-failure", "5xx"}
    assert custom.retry_methods == {b"GET"}


def test_bad_retry_and_outlier_settings_are_all_reported_with_their_paths() -> None:
    text = (
        "listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]\n"
        "pools:\n  app:\n    servers: [{name: a, address: 127.0.0.1:1}]\n"
        "    retries: {attempts: -1, on: [sometimes, 503], budget: 0.2, max_body: lots}\n"
        "    outlier: {consecutive_failures: 0, ejection: never, max_ejected: 150%}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    problems = "\n".join(caught.value.problems)
    for path in (
        "pools.app.retries.attempts",
        "pools.app.retries.on[0]",
        "pools.app.retries.budget",
        "pools.app.retries.max_body",
        "pools.app.outlier.consecutive_failures",
        "pools.app.outlier.ejection",
        "pools.app.outlier.max_ejected",
    ):
        assert f"{path}:" in problems, (path, problems)
    assert "sometimes" in problems


def test_a_server_found_down_and_then_up_by_its_check_is_back_before_its_time() -> None:
    pool = make_pool()
    s0 = pool.servers[0]
    fail(pool, s0, 3, now=100.0)  # killed: ejected until 110
    pool.check_result(s0, Signal.FALL, "2 checks failed: connect refused")
    assert s0.state == "down"
    pool.check_result(s0, Signal.RISE, "2 checks passed: ok")  # restarted
    assert not s0.ejected and s0.state == "up" and s0 in pool.candidates


def test_an_ejected_server_whose_check_keeps_passing_stays_out_for_its_time() -> None:
    pool = make_pool()
    s0 = pool.servers[0]
    fail(pool, s0, 3, now=100.0)
    pool.check_result(s0, Signal.PASS, "3 checks passed: ok")  # no change of health
    assert s0.ejected and s0 not in pool.candidates
