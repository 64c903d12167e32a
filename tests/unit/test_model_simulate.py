"""The Monte Carlo: interval arithmetic by hand, and an interval that holds the exact value."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from ninelives.model.blocks import YEAR_S, Component, availability
from ninelives.model.load import load_arch, parse_arch
from ninelives.model.simulate import _per_year, renewal, simulate, sweep

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def sets(*pairs: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([p[0] for p in pairs], dtype=float), np.array([p[1] for p in pairs],
                                                                  dtype=float)


def as_pairs(intervals: tuple[np.ndarray, np.ndarray]) -> list[tuple[float, float]]:
    return [(float(s), float(e)) for s, e in zip(*intervals, strict=True)]


def test_sweep_union_intersection_and_k_of_n() -> None:
    a = sets((0, 10), (20, 30))
    b = sets((5, 25))
    c = sets((8, 9), (29, 40))
    assert as_pairs(sweep([a, b], 1)) == [(0, 30)]
    assert as_pairs(sweep([a, b], 2)) == [(5, 10), (20, 25)]
    assert as_pairs(sweep([a, b, c], 2)) == [(5, 10), (20, 25), (29, 30)]
    assert as_pairs(sweep([a, b, c], 3)) == [(8, 9)]
    # touching intervals do not overlap (half-open)
    assert as_pairs(sweep([sets((0, 5)), sets((5, 9))], 2)) == []
    assert as_pairs(sweep([a, sets()], 2)) == []


def test_down_time_is_split_at_year_boundaries() -> None:
    starts, ends = sets((10, 20), (YEAR_S - 5, YEAR_S + 7), (2 * YEAR_S + 1, 2 * YEAR_S + 2))
    assert list(_per_year(starts, ends, 3)) == [15.0, 7.0, 1.0]
    assert list(_per_year(*sets(), 2)) == [0.0, 0.0]


def test_a_component_is_down_for_its_unavailability() -> None:
    component = Component("c", "c", 0.99, 3600.0)
    starts, ends = renewal(component, 1000 * YEAR_S, np.random.default_rng(7))
    assert np.all(starts[1:] >= ends[:-1]) and np.all(ends > starts)
    assert float((ends - starts).sum()) / (1000 * YEAR_S) == pytest.approx(0.01, rel=0.02)
    assert float((ends - starts).mean()) == pytest.approx(3600, rel=0.02)


def test_the_same_seed_gives_the_same_answer() -> None:
    root = load_arch(EXAMPLES / "arch.yaml")
    first = simulate(root, 500, np.random.default_rng(3))
    assert simulate(root, 500, np.random.default_rng(3)) == first


CASES = {
    "example": (EXAMPLES / "arch.yaml").read_text(),
    "mtbf": "components: {c: {mtbf: 999h, mttr: 1h}}\nsystem: c\n",
    "parallel": "components: {c: {mtbf: 999h, mttr: 1h}}\nsystem: {parallel: {of: c, count: 2}}\n",
    "2 of 3": "components: {c: {availability: 99%}}\nsystem: {k_of_n: {k: 2, of: c, count: 3}}\n",
    "2 of 3 different": """
components: {a: {availability: 99%}, b: {availability: 98%}, c: {availability: 95%}}
system: {k_of_n: {k: 2, of: [a, b, c]}}
""",
    "standby": """
components: {p: {mtbf: 500h, mttr: 5h}, b: {availability: 99%, mttr: 2h}}
system: {standby: {primary: p, backup: b, failover_success: 90%, failover_time: 1h}}
""",
    "beta": "components: {c: {mtbf: 990h, mttr: 10h}}\n"
            "system: {parallel: {of: c, count: 3, beta: 0.1}}\n",
    # beta over different members and nested blocks: a rack (a switch and two servers)
    # beside a database; 2 of 3 different members, one of them a pair; a standby pair
    "beta nested": """
components: {sw: {mtbf: 5000h, mttr: 4h}, srv: {mtbf: 900h, mttr: 10h},
             db: {availability: 99%, mttr: 3h}}
system: {parallel: {of: [{series: [sw, {parallel: [srv, srv]}]}, db], beta: 0.2}}
""",
    "beta 2 of 3 different": """
components: {a: {mtbf: 990h, mttr: 10h}, b: {mtbf: 480h, mttr: 20h},
             c: {availability: 95%, mttr: 20h}}
system: {k_of_n: {k: 2, of: [a, b, {parallel: [c, c]}], beta: 0.3}}
""",
    # every repair of the primary takes 2 h: the 1 h switch is always served in full
    "fixed repairs": """
components: {p: {mtbf: 500h, mttr: 2h, repair: fixed}, b: {mtbf: 198h, mttr: 2h}}
system: {standby: {primary: p, backup: b, failover_success: 90%, failover_time: 1h}}
""",
    "beta standby": """
components: {p: {mtbf: 500h, mttr: 5h}, b: {availability: 99%, mttr: 2h}}
system: {standby: {primary: p, backup: b, failover_success: 90%, failover_time: 1h,
                   beta: 0.2}}
""",
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_interval_contains_the_exact_value(name: str) -> None:
    root = parse_arch(CASES[name])
    exact = availability(root)
    # A stream of its own for each case: with one seed for all, cases of the same shape
    # (the standby ones) drew the same numbers and missed or held together.
    result = simulate(root, 20_000, np.random.default_rng([20261127, zlib.crc32(name.encode())]))
    assert result.low < result.availability < result.high
    assert result.contains(exact), (name, exact, result)
    assert result.downtime_per_year_s == pytest.approx((1 - result.availability) * YEAR_S)


def test_too_few_years() -> None:
    with pytest.raises(ValueError, match="at least 2 system-years"):
        simulate(parse_arch(CASES["mtbf"]), 1, np.random.default_rng(0))
