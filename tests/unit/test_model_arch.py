"""The architecture file: every problem at once, each with the path the user wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from ninelives.model.blocks import Component, Series, Standby, walk
from ninelives.model.load import ASSUMED_MTTR_S, ArchError, load_arch, parse_arch


def problems_of(text: str) -> list[str]:
    with pytest.raises(ArchError) as caught:
        parse_arch(text)
    return caught.value.problems


def test_every_problem_with_its_path() -> None:
    problems = problems_of("""
components:
  link: {mtbf: 2000h}
  psu: {availability: 99.9}
  both: {availability: 99%, mtbf: 3h, mttr: 1h}
  none: {pool: app}
  slow: {mtbf: fast, mttr: 1h, repair: weibull}
system:
  series:
    - parallel: {of: lnk, count: 2}
    - parallel: [psu, {k_of_n: {k: 4, of: link, count: 3}}]
    - k_of_n: {k: 2, of: [link, psu], count: 3}
    - standby: {primary: prov, backup: psu, failover_success: 2, failover_time: soon}
    - parallel: {of: [link, {series: [psu]}], beta: 0.1}
    - parallel: {of: link}
    - parallel: {of: link, count: 2, beta: 1.5}
    - {foo: 1}
    - series: {of: link, beta: 0.1}
""")
    assert problems == [
        "components.link.mttr: required with mtbf",
        "components.psu.availability: expected a percentage like 99.95% or 50%, got 99.9 "
        "(a bare number is ambiguous: write it with %)",
        "components.both.mtbf: give availability or mtbf + mttr, not both",
        "components.none: expected availability, or mtbf and mttr",
        'components.slow.mtbf: expected a duration like 500ms or 2s, got "fast"',
        'components.slow.repair: expected exponential or fixed, got "weibull"',
        "system.series[1].parallel[1].k_of_n.k: expected at most 3 (the number of members), "
        "got 4",
        "system.series[2].k_of_n.count: only with of: NAME (a list gives its members itself)",
        "system.series[3].standby.failover_success: expected a percentage like 99.95% or 50%, "
        "got 2 (a bare number is ambiguous: write it with %)",
        'system.series[3].standby.failover_time: expected a duration like 500ms or 2s, '
        'got "soon"',
        "system.series[5].parallel.count: required with of: NAME",
        "system.series[6].parallel.beta: expected a share from 0 to 1 like 0.05, or 5%, got 1.5",
        "system.series[7]: expected a component name or a block with exactly one of series, "
        "parallel, k_of_n, standby, got a mapping",
        "system.series[8].series.count: required with of: NAME",
        "system.series[8].series.beta: only on a redundant group: parallel, k_of_n or standby "
        "(members in series do not back each other up)",
        'system.series[0].parallel.of: no component named "lnk"',
        'system.series[3].standby.primary: no component named "prov"',
    ]


def test_the_issue_example_of_a_misspelt_name() -> None:
    problems = problems_of("""
components: {link: {mtbf: 2000h, mttr: 1h}}
system:
  series:
    - link
    - parallel: {of: lnk, count: 2}
""")
    assert problems == ['system.series[1].parallel.of: no component named "lnk"']


@pytest.mark.parametrize(("text", "expected"), [
    ("", ["expected a mapping with components and system, got nothing"]),
    ("components: {}\nsystem: a\n", ["components: must not be empty",
                                     'system: no component named "a"']),
    ("components: {a: {availability: 0%}}\nsystem: a\n",
     ["components.a.availability: expected an availability above 0%"]),
    ("components: {a: {availability: 99%}}\n", ["system: required"]),
    ("components: {a: {availability: 99%}}\nsystem: {series: []}\n",
     ["system.series: must not be empty"]),
    ("components: {a: {availability: 99%}}\nsystem: [a]\n",
     ["system: expected a mapping, got a list"]),
    ("components: {a: {availability: 99%, colour: red}}\nsystem: a\n",
     ["components.a.colour: unknown key"]),
    # libyaml's parser reads architecture files (large ones load ten times faster).
    ("a: [\n", ["line 2, column 1: did not find expected node content "
                "(while parsing a flow node at line 2)"]),
])
def test_file_problems(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def test_the_tree_keeps_paths_and_repair_times() -> None:
    root = parse_arch("""
components:
  psu: {availability: 99.9%}
  link: {mtbf: 2000h, mttr: 1h}
  provider: {availability: 99.95%, mttr: 2h}
system:
  series:
    - parallel: {of: psu, count: 2}
    - parallel: {of: link, count: 2, beta: 0.05}
    - standby: {primary: provider, backup: provider, failover_success: 99%,
                failover_time: 30s}
""")
    paths = [block.path for block in walk(root)]
    assert paths == [
        "system.series",
        "system.series[0].parallel",
        "system.series[0].parallel.of[0]",
        "system.series[0].parallel.of[1]",
        "system.series[1].parallel",
        "system.series[1].parallel.beta",
        "system.series[1].parallel.independent",
        "system.series[1].parallel.of[0]",
        "system.series[1].parallel.of[1]",
        "system.series[2].standby",
        "system.series[2].standby.primary",
        "system.series[2].standby.backup",
    ]
    leaves = [block for block in walk(root) if isinstance(block, Component)]
    psu = leaves[0]
    assert (psu.mttr_s, psu.mttr_assumed) == (ASSUMED_MTTR_S, True)
    assert psu.mtbf_s == pytest.approx(999 * 3600)
    link = leaves[2]
    assert (link.mttr_s, link.mttr_assumed) == (3600, False)
    provider = leaves[-1]
    assert (provider.mttr_s, provider.mttr_assumed) == (7200, False)
    standby = next(block for block in walk(root) if isinstance(block, Standby))
    assert (standby.success, standby.switch_s) == (pytest.approx(0.99), 30)
    assert isinstance(root, Series)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ArchError) as caught:
        load_arch(tmp_path / "missing.yaml")
    assert caught.value.problems[0].startswith(f"cannot read {tmp_path / 'missing.yaml'}")
