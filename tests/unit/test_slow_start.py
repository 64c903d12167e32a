"""Slow start on a Pool driven by hand: the ramp's shape, when it starts and ends, what the
balancers make of it, and that nothing is rebuilt when no server is ramping. No clock, no
sockets: time is the number passed to ``advance_ramps``."""

from __future__ import annotations

from collections import Counter

import pytest

from ninelives.config import ConfigError, parse_config
from ninelives.pool import AdminState, Pool, Server
from ninelives.slow_start import RAMP_FLOOR, ramp_share
from ninelives.states import Health, Signal


def make_pool(servers: int = 2, pool_yaml: str = ", slow_start: 10s") -> Pool:
    entries = ", ".join(f"{{name: s{i}, address: 127.0.0.1:{9000 + i}}}" for i in range(servers))
    cfg = parse_config(
        "listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]\n"
        f"pools: {{app: {{servers: [{entries}]{pool_yaml}}}}}\n",
        env={},
    )
    return Pool("app", cfg.pools["app"], initial=Health.UP)


def share_of(pool: Pool, server: Server, picks: int = 1000) -> float:
    seen = Counter(pool.pick(None) for _ in range(picks))
    return seen[server] / picks


def down_and_back(pool: Pool, server: Server) -> None:
    pool.check_result(server, Signal.FALL, "1 check failed: connect refused")
    pool.check_result(server, Signal.RISE, "2 checks passed: TCP connect")


def test_the_ramp_is_linear_from_a_tenth_to_all_in_whole_percents() -> None:
    assert [ramp_share(t, 10.0) for t in (0, 2.5, 5, 7.5, 9.99, 10, 60)] == [
        0.1, 0.32, 0.55, 0.77, 0.99, 1.0, 1.0,
    ]
    assert ramp_share(-1.0, 10.0) == RAMP_FLOOR
    assert ramp_share(0.0, 0.0) == 1.0  # slow_start: 0s is off


def test_a_server_back_from_down_starts_at_a_tenth_of_its_weight_and_ends_at_all() -> None:
    pool = make_pool()
    s0, s1 = pool.servers
    down_and_back(pool, s0)
    # At once, before any tick: never a moment at full weight.
    assert s0.ramp == RAMP_FLOOR and s0 in pool.candidates
    assert share_of(pool, s0) == pytest.approx(0.1 / 1.1, abs=0.01)
    pool.advance_ramps(100.0)  # the first tick gives the ramp its start
    pool.advance_ramps(105.0)
    assert s0.ramp == 0.55
    assert share_of(pool, s0) == pytest.approx(0.55 / 1.55, abs=0.01)
    pool.advance_ramps(110.0)
    assert s0.ramp == 1.0 and pool.ramping == []
    assert share_of(pool, s0) == pytest.approx(0.5, abs=0.01)
    assert s1.ramp == 1.0  # the other server never ramped


def test_servers_up_at_start_take_their_full_share_at_once() -> None:
    pool = make_pool()
    assert [s.ramp for s in pool.servers] == [1.0, 1.0] and pool.ramping == []


def test_maint_to_ready_ramps_but_drain_to_ready_does_not() -> None:
    pool = make_pool()
    s0, s1 = pool.servers
    pool.set_admin_state("s0", AdminState.MAINT)
    pool.set_admin_state("s0", AdminState.READY)
    assert s0.ramp == RAMP_FLOOR
    pool.set_admin_state("s1", AdminState.DRAIN)  # a draining server still served
    pool.set_admin_state("s1", AdminState.READY)
    assert s1.ramp == 1.0


def test_a_server_back_from_ejection_ramps() -> None:
    pool = make_pool(pool_yaml=", outlier: {ejection: 10s}")  # the default slow start
    s0 = pool.servers[0]
    for _ in range(3):
        pool.record_failure(s0, 100.0, "status 503")
    assert s0.ejected
    pool.expire_ejections(110.0)
    assert not s0.ejected and s0.ramp == RAMP_FLOOR


def test_a_server_out_again_mid_ramp_starts_over_when_it_is_back() -> None:
    pool = make_pool()
    s0 = pool.servers[0]
    down_and_back(pool, s0)
    pool.advance_ramps(100.0)
    pool.advance_ramps(106.0)
    assert s0.ramp == 0.64
    pool.check_result(s0, Signal.FALL, "2 checks failed: connect refused")
    assert s0.ramp == 1.0 and pool.ramping == []
    pool.check_result(s0, Signal.RISE, "2 checks passed: TCP connect")
    pool.advance_ramps(200.0)
    assert s0.ramp == RAMP_FLOOR and s0.ramp_since == 200.0


def test_weights_scale_the_ramp() -> None:
    pool = make_pool()
    s0 = pool.servers[0]
    pool.set_weight("s1", 3)
    down_and_back(pool, s0)
    pool.advance_ramps(0.0)
    pool.advance_ramps(5.0)  # 55% of weight 1 against weight 3
    assert share_of(pool, s0, 3100) == pytest.approx(0.55 / 3.55, abs=0.01)


def test_leastconn_weighs_load_by_the_ramped_weight() -> None:
    pool = make_pool(pool_yaml=", balance: leastconn")
    s0, s1 = pool.servers
    down_and_back(pool, s0)
    s0.active, s1.active = 1, 5  # 1 request at a tenth of weight 1 is 10 at full weight
    assert pool.pick(None) is s1
    s1.active = 11
    assert pool.pick(None) is s0


def test_random2_draws_a_ramping_server_by_its_ramped_weight() -> None:
    pool = make_pool(servers=3, pool_yaml=", balance: random2")
    down_and_back(pool, pool.servers[0])
    # All idle: the first server drawn wins, drawn by weight (0.1 against 1 and 1).
    assert share_of(pool, pool.servers[0], 6000) == pytest.approx(0.1 / 2.1, abs=0.015)


def test_no_ramp_no_rebuild() -> None:
    pool = make_pool()
    before = pool.candidates
    for tick in range(100):
        pool.advance_ramps(tick * 0.05)
    assert pool.candidates is before  # the same tuple: balancers rebuild nothing


def test_a_ramp_rebuilds_the_candidates_only_when_a_share_moves() -> None:
    pool = make_pool()
    down_and_back(pool, pool.servers[0])
    pool.advance_ramps(0.0)
    rebuilds = 0
    for tick in range(1, 400):  # 20 s of 50 ms ticks over a 10 s ramp
        last = pool.candidates
        pool.advance_ramps(tick * 0.05)
        rebuilds += pool.candidates is not last
    assert rebuilds <= 90  # one per whole percent from 10% to 100%
    assert pool.servers[0].ramp == 1.0


def test_hash_and_first_never_ramp() -> None:
    for balance in ("hash", "first"):
        pool = make_pool(pool_yaml=f", balance: {balance}")
        down_and_back(pool, pool.servers[0])
        assert pool.servers[0].ramp == 1.0 and pool.slow_start == 0.0


def test_slow_start_zero_is_off() -> None:
    pool = make_pool(pool_yaml=", slow_start: 0s")
    down_and_back(pool, pool.servers[0])
    assert pool.servers[0].ramp == 1.0 and pool.ramping == []


def test_the_default_ramp_is_ten_seconds_and_hash_pools_skip_it_silently() -> None:
    cfg = parse_config(
        "listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]\n"
        "pools:\n"
        "  app: {servers: [{name: a, address: 127.0.0.1:9000}]}\n"
        "  keyed: {balance: hash, servers: [{name: a, address: 127.0.0.1:9000}]}\n",
        env={},
    )
    assert cfg.pools["app"].slow_start == 10.0
    assert Pool("keyed", cfg.pools["keyed"], initial=Health.UP).slow_start == 0.0


def test_slow_start_set_with_hash_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        make_pool(pool_yaml=", balance: hash, slow_start: 10s")
    assert caught.value.problems == [
        "pools.app.slow_start: only with balance roundrobin, leastconn or random2 (hash keeps "
        "every key on its server); got balance: hash, set slow_start: 0s or leave it out"
    ]


def test_status_shows_the_ramp() -> None:
    pool = make_pool()
    down_and_back(pool, pool.servers[0])
    assert pool.servers[0].status()["ramp"] == RAMP_FLOOR
    assert pool.servers[1].status()["ramp"] == 1.0
