"""What active-active nodes share, decided without a coordinator: the shared settings of a
pool (parse, merge a change, the steps a node takes), the health views that keep a server
out of the hash table, and the hash tables that result on two nodes."""

from __future__ import annotations

import random

import pytest

from ninelives.cluster.coordinator import Member
from ninelives.cluster.sharing import (
    Setting,
    format_settings,
    hash_exclusions,
    parse_settings,
    pool_of,
    runtime_key,
    steps,
    with_change,
)
from ninelives.config.models import PoolConfig
from ninelives.pool import AdminState, Pool
from ninelives.states import Health, Signal

DRAIN, MAINT, READY = AdminState.DRAIN, AdminState.MAINT, AdminState.READY


def test_a_change_round_trips_and_keeps_the_other_servers_settings() -> None:
    settings = with_change({}, "b1", "lb-1", state=DRAIN)
    settings = with_change(settings, "b2", "lb-2", weight=5)
    settings = with_change(settings, "b1", "lb-2", weight=3)
    assert parse_settings(format_settings(settings)) == {
        "b1": Setting(DRAIN, "lb-1", 3, "lb-2"),
        "b2": Setting(None, "", 5, "lb-2"),
    }
    assert parse_settings(None) == {}
    assert pool_of(runtime_key("app")) == "app"
    assert pool_of("members/lb-1") is None
    assert pool_of("runtime/") is None


@pytest.mark.parametrize(("text", "problem"), [
    ('[1]', 'expected {"servers": {...}}'),
    ('{"servers": {"b1": 3}}', "servers.b1: expected an object"),
    ('{"servers": {"b1": {"state": "gone"}}}', "servers.b1.state: unknown state 'gone'"),
    ('{"servers": {"b1": {"weight": 999}}}', "servers.b1.weight: expected 0-256, got 999"),
    ('{"servers": {"b1": {"weight": true}}}', "servers.b1.weight: expected 0-256, got True"),
])
def test_a_bad_shared_value_is_named(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("{", r"\{").replace("(", r"\(")):
        parse_settings(text)


def test_steps_change_only_what_differs_skip_unknown_servers_and_say_where_from() -> None:
    settings = {
        "b1": Setting(DRAIN, "lb-1"),
        "b2": Setting(READY, "lb-2", 4, "lb-3"),
        "b3": Setting(MAINT, "lb-1"),  # this node has no b3
        "b4": Setting(None, "", 2, "lb-1"),
    }
    have = {"b1": (READY, 1), "b2": (READY, 1), "b4": (READY, 2)}
    got = steps(settings, have)
    assert [(s.server, s.state, s.weight, s.reason) for s in got] == [
        ("b1", DRAIN, None, "drain on lb-1"),
        ("b2", None, 4, "weight 4 on lb-3"),
    ]
    assert steps(settings, {"b1": (DRAIN, 1)}) == []  # already so: nothing to do


def member(name: str, down: dict[str, tuple[str, ...]]) -> Member:
    return Member(name, "127.0.0.1:9901", "active", "healthy", down=down)


def test_a_server_any_other_node_sees_down_is_excluded_from_hashing() -> None:
    members = [
        member("lb-1", {"app": ("b1",)}),
        member("lb-2", {"app": ("b2",), "api": ("x",)}),
        member("lb-3", {"app": ("b2", "b3")}),
    ]
    assert hash_exclusions(members, "lb-1") == {
        "app": frozenset({"b2", "b3"}), "api": frozenset({"x"})}
    assert hash_exclusions(members, "lb-2") == {"app": frozenset({"b1", "b2", "b3"})}
    assert hash_exclusions([], "lb-1") == {}


def test_member_records_carry_the_view_and_refuse_a_malformed_one() -> None:
    record = member("lb-2", {"app": ("b2",)})
    assert Member.from_json(record.to_json()) == record
    with pytest.raises(ValueError, match="expected down as pools of server names"):
        Member.from_json('{"name": "x", "address": "a", "role": "active", '
                         '"health": "healthy", "down": {"app": "b2"}}')


def hash_pool(*names: str) -> Pool:
    config = PoolConfig.model_validate({
        "balance": "hash", "hash_on": "header:X-User",
        "servers": [{"name": n, "address": f"127.0.0.1:{8000 + i}"} for i, n in
                    enumerate(names)],
    })
    return Pool("app", config, rng=random.Random(1), initial=Health.UP)


def placement(pool: Pool, keys: list[bytes]) -> list[str]:
    return [server.name for key in keys if (server := pool.pick(key)) is not None]


def test_views_that_agree_give_the_same_table_on_two_nodes() -> None:
    keys = [f"user-{i}".encode() for i in range(500)]
    lb1, lb2 = hash_pool("b1", "b2", "b3"), hash_pool("b1", "b2", "b3")
    lb2.check_result(lb2.by_name["b2"], Signal.FALL, "connection refused")  # only lb-2 sees it
    assert placement(lb1, keys) != placement(lb2, keys)
    before = lb1.candidates
    lb1.exclude_from_hash(frozenset({"b2"}))  # lb-2's view, read from its member record
    assert placement(lb1, keys) == placement(lb2, keys)
    assert "b2" not in placement(lb1, keys)
    moved = sum(a != b for a, b in zip(placement(hash_pool("b1", "b2", "b3"), keys),
                                       placement(lb1, keys), strict=True))
    assert 100 < moved < 250, moved  # about b2's third of the keys moved, no more
    lb1.exclude_from_hash(frozenset({"b2"}))
    assert lb1.candidates is not before  # rebuilt once, on the change
    same = lb1.candidates
    lb1.exclude_from_hash(frozenset({"b2"}))
    assert lb1.candidates is same  # the same view again: nothing rebuilt


def test_an_exclusion_that_would_leave_nothing_falls_back_to_the_nodes_own_view() -> None:
    pool = hash_pool("b1", "b2")
    pool.exclude_from_hash(frozenset({"b1", "b2"}))
    assert {s.name for s in pool.candidates} == {"b1", "b2"}
    pool.exclude_from_hash(frozenset({"b1"}))
    assert [s.name for s in pool.candidates] == ["b2"]


def test_exclusions_leave_pools_that_do_not_hash_alone() -> None:
    config = PoolConfig.model_validate({
        "servers": [{"name": "b1", "address": "127.0.0.1:8001"},
                    {"name": "b2", "address": "127.0.0.1:8002"}]})
    pool = Pool("app", config, initial=Health.UP)
    pool.exclude_from_hash(frozenset({"b1"}))
    assert {s.name for s in pool.candidates} == {"b1", "b2"}
