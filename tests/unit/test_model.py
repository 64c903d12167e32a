"""The exact availability of the block tree: the issue's known values, properties, importance."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ninelives.model.blocks import (
    YEAR_S,
    Component,
    KofN,
    OwnPart,
    Parallel,
    Series,
    Standby,
    at_least,
    availability,
    importance,
    walk,
)
from ninelives.model.common_cause import frequency
from ninelives.model.load import parse_arch
from ninelives.model.plot import COMMON_CAUSE, svg
from ninelives.model.report import predict, to_json
from ninelives.model.simulate import simulate


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
    assert arch("series: {of: c, count: 3}") == pytest.approx(0.99**3)
    assert arch("series: {of: [c, {parallel: {of: c, count: 2}}]}") == pytest.approx(
        0.99 * (1 - 0.01**2))


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


def test_standby_with_fixed_repairs_switches_for_the_whole_switch_time() -> None:
    primary = Component("p", "p", 0.999, 7200.0, repair="fixed")
    block = Standby("x", primary, leaf(0.99, "b"), success=0.9, switch_s=3600)
    assert block.switch_within_outage_s() == 3600  # min(t, MTTR), not MTTR (1 - e^(-t/MTTR))
    assert Standby("x", primary, leaf(0.99, "b"), 0.9, 9000).switch_within_outage_s() == 7200
    frequency = 0.001 / 7200
    assert availability(block) == pytest.approx(
        1 - (0.001 * (1 - 0.9 * 0.99) + frequency * 0.9 * 0.99 * 3600), abs=1e-15)
    parsed = parse_arch("components: {p: {mtbf: 999h, mttr: 1h, repair: fixed}}\nsystem: p\n")
    assert isinstance(parsed, Component) and parsed.repair == "fixed"


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


@given(st.lists(unit, min_size=2, max_size=7), st.integers(min_value=1, max_value=7))
def test_k_of_n_of_different_members_matches_enumeration(values: list[float], k: int) -> None:
    n = len(values)
    k = min(k, n)
    total = 0.0
    for mask in range(1 << n):
        if bin(mask).count("1") >= k:
            total += math.prod(v if mask >> i & 1 else 1 - v for i, v in enumerate(values))
    assert at_least(k, values) == pytest.approx(total, abs=1e-12)


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SVG = "{http://www.w3.org/2000/svg}"
DIFFERENT = """
components:
  a: {mtbf: 990h, mttr: 10h}
  b: {mtbf: 198h, mttr: 2h}
  sw: {mtbf: 4999h, mttr: 1h}
  c: {availability: 95%}
system:
  parallel: {of: [a, b, {series: [sw, {parallel: [c, c]}]}], beta: 0.2}
"""


def blocks_of(text: str) -> dict[str, object]:
    return {block.path: block for block in walk(parse_arch(text))}


def test_beta_on_different_members_and_nested_blocks() -> None:
    found = blocks_of(DIFFERENT)
    rack = 0.9998 * (1 - 0.05**2)
    u = {"a": 0.01, "b": 0.01, "rack": 1 - rack}
    f = {"a": 0.01 / 10, "b": 0.01 / 2, "rack": (0.0002 / 1 * (1 - 0.05**2)
                                                 + 2 * 0.05 / 1 * 0.05 * 0.9998)}
    common = found["system.parallel.beta"]
    assert isinstance(common, Component)
    # the common cause: beta of the least unavailability and of the rarest failures
    assert common.availability == pytest.approx(1 - 0.2 * min(u.values()), abs=1e-15)
    assert common.mttr_s / 3600 == pytest.approx(0.2 * min(u.values())
                                                 / (0.2 * min(f.values())))
    assert common.label == "group (common cause)"
    a, b, own_rack = (found[f"system.parallel.of[{i}]"] for i in range(3))
    assert isinstance(a, Component) and isinstance(b, Component)
    assert isinstance(own_rack, OwnPart)
    # every member keeps its own availability overall: common cause times its own part
    for member, value in ((a, 0.99), (b, 0.99), (own_rack, rack)):
        assert common.availability * availability(member) == pytest.approx(value, abs=1e-15)
    assert (a.mttr_s, b.mttr_s) == (36_000, 7_200)
    assert own_rack.label == "series of 2 (independent part)"
    independent = 1 - (1 - availability(a)) * (1 - availability(b)) * (
        1 - availability(own_rack))
    assert availability(parse_arch(DIFFERENT)) == pytest.approx(
        common.availability * independent, abs=1e-15)


def test_the_picture_draws_the_common_cause_and_the_own_parts() -> None:
    root = parse_arch(DIFFERENT)
    picture = ET.fromstring(svg(root, predict(root)))
    texts = [node.text or "" for node in picture.iter(f"{SVG}text")]
    assert "group (common cause)" in texts
    assert any(text.startswith("series of 2 (independent part): ") for text in texts)
    assert any(text.startswith("parallel 3 blocks with common cause: ") for text in texts)
    fills = [node.get("fill") for node in picture.iter(f"{SVG}rect")]
    assert fills.count(COMMON_CAUSE[0]) == 1


def test_the_racks_of_the_readme() -> None:
    text = (EXAMPLES / "arch-racks.yaml").read_text()
    shared = predict(parse_arch(text))
    alone = predict(parse_arch(text.replace("beta: 0.02", "beta: 0")))
    assert round(alone.downtime_per_year_s, 3) == 0.322
    assert round(shared.downtime_per_year_s) == 64
    assert shared.blocks[0].path == "system.parallel.beta"


def test_beta_on_a_standby_of_different_components() -> None:
    found = blocks_of("""
components: {p: {mtbf: 500h, mttr: 5h}, b: {availability: 99%, mttr: 2h}}
system: {standby: {primary: p, backup: b, failover_success: 90%, failover_time: 1h,
                   beta: 0.2}}
""")
    common, primary = found["system.standby.beta"], found["system.standby.primary"]
    assert isinstance(common, Component) and isinstance(primary, Component)
    u_p, u_b = 5 / 505, 0.01
    assert common.availability == pytest.approx(1 - 0.2 * u_p)
    assert common.mttr_s == pytest.approx(0.2 * u_p / (0.2 * min(u_p / 5, u_b / 2)) * 3600)
    assert common.availability * primary.availability == pytest.approx(1 - u_p)
    assert isinstance(found["system.standby.independent"], Standby)


def test_frequency_counts_the_outages_the_simulation_draws() -> None:
    root = parse_arch("""
components: {a: {mtbf: 90h, mttr: 10h}, b: {mtbf: 45h, mttr: 5h}, c: {mtbf: 30h, mttr: 2h}}
system:
  series:
    - k_of_n: {k: 2, of: [a, b, c]}
    - parallel: [a, {series: [b, c]}]
""")
    result = simulate(root, 400, np.random.default_rng(5))
    assert result.outages / (400 * YEAR_S) == pytest.approx(frequency(root), rel=0.03)
    a = Component("a", "a", 0.9, 36_000.0)
    assert frequency(a) == pytest.approx(1 / (100 * 3600))
    assert frequency(Parallel("p", (a, a))) == pytest.approx(2 * frequency(a) * 0.1)


names = st.sampled_from(["a", "b", "c", "d"])
member = st.one_of(
    names,
    st.builds(lambda x, y: f"{{series: [{x}, {y}]}}", names, names),
    st.builds(lambda x, y: f"{{parallel: [{x}, {y}]}}", names, names),
)
hours = st.integers(min_value=1, max_value=500)


@st.composite
def groups(draw: st.DrawFn, any_k: bool) -> tuple[str, str]:
    """Components a to d with random figures and a redundant group over them; ``any_k``:
    a k of n with any k (else only the groups redundant in every member: parallel, 1 of n
    and standby)."""
    figures = [f"{name}: {{mtbf: {draw(hours) * 10}h, mttr: {draw(hours) / 10}h}}"
               for name in "abcd"]
    components = "{" + ", ".join(figures) + "}"
    kind = draw(st.sampled_from(["parallel", "k_of_n", "standby"]))
    if kind == "standby":
        return components, (f"standby: {{primary: {draw(names)}, backup: {draw(names)}, "
                            f"failover_success: {draw(st.integers(50, 100))}%, "
                            f"failover_time: {draw(st.integers(0, 3600))}s")
    members = draw(st.lists(member, min_size=2, max_size=4))
    k = draw(st.integers(1, len(members))) if any_k else 1
    head = f"k_of_n: {{k: {k}, " if kind == "k_of_n" else "parallel: {"
    return components, f"{head}of: [{', '.join(members)}]"


def with_beta(group: tuple[str, str], beta: float | None) -> float:
    components, block = group
    share = "" if beta is None else f", beta: {beta!r}"
    return availability(parse_arch(f"components: {components}\nsystem: {{{block}{share}}}}}\n"))


@given(groups(any_k=True))
def test_beta_zero_equals_independent(group: tuple[str, str]) -> None:
    assert with_beta(group, 0.0) == with_beta(group, None)


@given(groups(any_k=False), st.floats(0, 1), st.floats(0, 1))
def test_more_common_cause_never_raises_availability(
    group: tuple[str, str], beta: float, more: float
) -> None:
    low, high = sorted((beta, more))
    assert with_beta(group, high) <= with_beta(group, low) + 1e-12


def test_common_cause_helps_a_group_that_needs_every_member() -> None:
    # k of n with k = n is a series: failures that come together cost less time than
    # failures apart, so a common cause raises its availability (each member keeps its own).
    alone = arch("k_of_n: {k: 2, of: [c, c]}")
    assert alone == pytest.approx(0.99**2)
    assert arch("k_of_n: {k: 2, of: [c, c], beta: 0.5}") > alone
