"""The exact availability of the block tree: the issue's known values, properties, importance."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ninelives.model.blocks import (
    YEAR_S,
    Component,
    KofN,
    Parallel,
    Series,
    Standby,
    at_least,
    availability,
    importance,
)
from ninelives.model.load import parse_arch
from ninelives.model.report import predict, to_json


def leaf(a: float, name: str = "c", mttr_s: float = 3600.0) -> Component:
    return Component(f"x.{name}", name, a, mttr_s)


def arch(system: str, components: str = "c: {availability: 99%}") -> float:
    return availability(parse_arch(f"components:\n  {components}\nsystem:\n  {system}\n"))


def test_mtbf_and_mttr_give_the_availability() -> None:
    assert availability(parse_arch("components: {c: {mtbf: 999h, mttr: 1h}}\nsystem: c\n")) == (
        pytest.approx(0.999, abs=1e-15))


def test_two_in_parallel() -> None:
    assert arch("parallel: {of: c, count: 2}", "c: {availability: 99.9%}") == pytest.approx(
        0.999999, abs=1e-12)
    assert arch("parallel: [c, c]", "c: {availability: 99.9%}") == pytest.approx(0.999999,
                                                                                 abs=1e-12)


def test_two_of_three_identical() -> None:
    assert arch("k_of_n: {k: 2, of: c, count: 3}") == pytest.approx(0.999702, abs=1e-12)


def test_two_of_three_different() -> None:
    value = availability(parse_arch("""
components:
  a: {availability: 99%}
  b: {availability: 98%}
  c: {availability: 95%}
system:
  k_of_n: {k: 2, of: [a, b, c]}
"""))
    assert value == pytest.approx(0.99832, abs=1e-12)


def test_six_nines_is_31_536_seconds_a_year() -> None:
    prediction = predict(parse_arch("components: {c: {availability: 99.9999%}}\nsystem: c\n"))
    assert prediction.downtime_per_year_s == pytest.approx(31.536, abs=1e-6)
    assert prediction.nines == pytest.approx(6.0)
    assert to_json(prediction)["downtime_per_year_s"] == pytest.approx(31.536, abs=1e-6)


def test_series_multiplies() -> None:
    assert arch("series: [c, c, c]") == pytest.approx(0.99**3)


def test_nested_blocks() -> None:
    # two racks of two servers in series with a switch each, either rack is enough
    value = arch("parallel: [{series: [c, {parallel: [c, c]}]}, {series: [c, {parallel: [c, c]}]}]")
    rack = 0.99 * (1 - 0.01**2)
    assert value == pytest.approx(1 - (1 - rack) ** 2)


def test_standby_without_switch_time_or_failed_failovers_is_parallel() -> None:
    value = arch("standby: {primary: c, backup: c}")
    assert value == pytest.approx(1 - 0.01**2)


def test_standby_formula() -> None:
    primary, backup = leaf(0.999, "p", mttr_s=7200), leaf(0.99, "b")
    block = Standby("x", primary, backup, success=0.9, switch_s=60)
    frequency = 0.001 / 7200
    switch = 7200 * (1 - math.exp(-60 / 7200))
    expected = 1 - (0.001 * (1 - 0.9 * 0.99) + frequency * 0.9 * 0.99 * switch)
    assert availability(block) == pytest.approx(expected, abs=1e-15)
    # a failover that never works leaves the primary alone
    assert availability(Standby("x", primary, backup, 0.0, 60)) == pytest.approx(0.999)


def test_beta_adds_the_common_cause_in_series() -> None:
    independent = arch("parallel: {of: c, count: 2}")
    shared = arch("parallel: {of: c, count: 2, beta: 0.1}")
    assert shared < independent
    common = 1 - 0.1 * 0.01
    own = 0.99 / common
    assert shared == pytest.approx(common * (1 - (1 - own) ** 2))
    # each member keeps its availability overall: common cause times its own part
    assert common * own == pytest.approx(0.99)
    assert arch("parallel: {of: c, count: 2, beta: 5%}") == pytest.approx(
        arch("parallel: {of: c, count: 2, beta: 0.05}"))


def test_importance_names_the_weakest_link_first() -> None:
    root = parse_arch("""
components:
  weak: {availability: 99%}
  strong: {availability: 99.99%}
  pair: {availability: 99.9%}
system:
  series: [weak, strong, {parallel: {of: pair, count: 2}}]
""")
    system, blocks = importance(root)
    assert blocks[0].path == "system.series[0]"
    assert blocks[0].gain == pytest.approx(system / 0.99 - system)
    gains = [block.gain for block in blocks]
    assert gains == sorted(gains, reverse=True)
    assert {block.path for block in blocks} >= {
        "system.series[1]", "system.series[2].parallel", "system.series[2].parallel.of[0]"
    }
    assert to_json(predict(root))["blocks"][0]["gain_per_year_s"] == pytest.approx(
        blocks[0].gain * YEAR_S)


def test_importance_equals_recomputing_with_the_block_perfect() -> None:
    a, b, c = leaf(0.9, "a"), leaf(0.8, "b"), leaf(0.95, "c")
    root = Series("s", (a, KofN("k", 2, (b, c, leaf(0.7, "d")))))
    system, blocks = importance(root)
    by_path = {block.path: block.gain for block in blocks}
    perfect_b = Series("s", (a, KofN("k", 2, (leaf(1.0, "b"), c, leaf(0.7, "d")))))
    assert by_path["x.b"] == pytest.approx(availability(perfect_b) - system)


unit = st.floats(min_value=0.5, max_value=0.999999)
units = st.lists(unit, min_size=1, max_size=6)


@given(units, unit)
def test_a_redundant_copy_never_lowers_availability(values: list[float], extra: float) -> None:
    leaves = tuple(leaf(v) for v in values)
    before = availability(Parallel("p", leaves))
    assert availability(Parallel("p", (*leaves, leaf(extra)))) >= before - 1e-15
    for k in range(1, len(values) + 1):
        assert availability(KofN("k", k, (*leaves, leaf(extra)))) >= (
            availability(KofN("k", k, leaves)) - 1e-12)


@given(units)
def test_series_never_exceeds_its_weakest_block(values: list[float]) -> None:
    assert availability(Series("s", tuple(leaf(v) for v in values))) <= min(values) + 1e-15


@given(units)
def test_k_of_n_at_the_ends_is_parallel_and_series(values: list[float]) -> None:
    leaves = tuple(leaf(v) for v in values)
    assert availability(KofN("k", 1, leaves)) == pytest.approx(
        availability(Parallel("p", leaves)), abs=1e-12)
    assert availability(KofN("k", len(values), leaves)) == pytest.approx(
        availability(Series("s", leaves)), abs=1e-12)


@given(st.integers(min_value=1, max_value=5), st.integers(min_value=0, max_value=4),
       st.floats(min_value=50.0, max_value=99.9999))
def test_beta_zero_equals_independent(count: int, more: int, percent: float) -> None:
    k = max(1, count - more)
    text = f"{percent:.4f}%"
    for block in (f"parallel: {{of: c, count: {count}}}", f"k_of_n: {{k: {k}, of: c, count: "
                  f"{count}}}"):
        with_beta = block[:-1] + ", beta: 0}"
        assert arch(with_beta, f"c: {{availability: {text}}}") == arch(
            block, f"c: {{availability: {text}}}")


@given(st.lists(unit, min_size=2, max_size=7), st.integers(min_value=1, max_value=7))
def test_k_of_n_of_different_members_matches_enumeration(values: list[float], k: int) -> None:
    n = len(values)
    k = min(k, n)
    total = 0.0
    for mask in range(1 << n):
        if bin(mask).count("1") >= k:
            total += math.prod(v if mask >> i & 1 else 1 - v for i, v in enumerate(values))
    assert at_least(k, values) == pytest.approx(total, abs=1e-12)
