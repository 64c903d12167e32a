"""From an architecture file to a block tree, or an ArchError listing every problem.

Problems carry the path the user wrote: ``system.series[1].parallel.of: no component
named "lnk"``. The names a block refers to are checked on the raw data, so that they are
reported together with the field problems pydantic finds.

Decisions the tree makes explicit:

- A component given by availability alone has no repair time; the simulation needs one,
  so ``ASSUMED_MTTR_S`` (one hour) is assumed and the output says so. Give ``mttr`` with
  the availability to set it.
- ``beta`` (common cause, the beta-factor model): a group with members ``A_i`` becomes
  ``series(C, group(A_i'))``, at the group's path, with ``C`` at ``PATH.beta`` and the
  group of independent parts at ``PATH.independent``. The common cause ``C`` takes the
  share ``beta`` of the unavailability of the most available member,
  ``U_C = beta * min(1 - A_i)``, and each member keeps its own availability overall,
  ``A_i' = A_i / A_C``. For identical members this is the classic split of each
  member's failures into ``beta`` common and ``1 - beta`` independent. Members of a
  group with ``beta`` must be components (a nested block has no single failure process
  to share).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ninelives.config.errors import ConfigError, problem, problems_from
from ninelives.config.fields import Loc, as_name
from ninelives.config.loader import _load_yaml
from ninelives.model.blocks import Block, Component, KofN, Parallel, Series, Standby
from ninelives.model.spec import (
    BLOCK_KINDS,
    ArchSpec,
    BlockSpec,
    ComponentSpec,
    GroupSpec,
    KofNSpec,
    StandbySpec,
)
from ninelives.units import describe_input

ASSUMED_MTTR_S = 3600.0


class ArchError(ConfigError):
    """An architecture file that cannot be modelled; ``problems`` has every problem."""


def parse_arch(text: str, source: str = "<architecture>") -> Block:
    """Validate architecture YAML and build its block tree; ArchError lists every problem."""
    data, problems = _load_yaml(text, fast=True)
    if problems:
        raise ArchError(problems, source)
    if not isinstance(data, dict):
        raise ArchError([f"expected a mapping with components and system, "
                         f"got {describe_input(data)}"], source)
    if isinstance(data.get("components"), dict):
        data["components"] = {as_name(k) or k: v for k, v in data["components"].items()}
    references = [problem(loc, text) for loc, text in reference_problems(data)]
    try:
        spec = ArchSpec.model_validate(data)
    except ValidationError as error:
        found = [_untagged(line) for line in problems_from(error)]
        raise ArchError(_unique(found + references), source) from None
    if references:
        raise ArchError(references, source)
    return build(spec)


def load_arch(path: str | Path) -> Block:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ArchError([f"cannot read {path}: {error}"], str(path)) from None
    return parse_arch(text, source=str(path))


def _untagged(line: str) -> str:
    # pydantic puts union tags into the location: system.@block.series[0].@name
    return line.replace(".@name", "").replace(".@block", "").replace(".@list", "").replace(
        ".@group", "")


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))


def reference_problems(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Names in ``system`` that no component has, and ``beta`` over nested blocks."""
    components = data.get("components")
    names = set(components) if isinstance(components, dict) else set()
    out: list[tuple[Loc, str]] = []

    def name(value: Any, loc: Loc) -> None:
        text = as_name(value)
        if text is not None and text not in names and isinstance(components, dict):
            out.append((loc, f'no component named "{text}"'))

    def members(value: Any, loc: Loc) -> None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                block(item, (*loc, index))
        else:
            name(value, loc)

    def block(value: Any, loc: Loc) -> None:
        if not isinstance(value, dict):
            name(value, loc)
            return
        for kind in BLOCK_KINDS:
            body = value.get(kind)
            where = (*loc, kind)
            if kind == "series" or (kind == "parallel" and isinstance(body, list)):
                members(body, where)
            elif kind in ("parallel", "k_of_n") and isinstance(body, dict):
                members(body.get("of"), (*where, "of"))
                nested = isinstance(body.get("of"), list) and any(
                    isinstance(item, dict) for item in body["of"])
                if body.get("beta") not in (None, 0) and nested:
                    out.append(((*where, "beta"), "only over components (a nested block "
                                "has no single failure process to share)"))
            elif kind == "standby" and isinstance(body, dict):
                for role in ("primary", "backup"):
                    name(body.get(role), (*where, role))

    if "system" in data:
        block(data["system"], ("system",))
    return out


def build(spec: ArchSpec) -> Block:
    """The block tree of a valid spec, with ``beta`` rewritten as a common-cause block."""
    return _block(spec, spec.system, "system")


def _component(spec: ArchSpec, name: str, path: str, note: str = "") -> Component:
    given: ComponentSpec = spec.components[name]
    if given.mtbf is not None and given.mttr is not None:
        value = given.mtbf / (given.mtbf + given.mttr)
        return Component(path, name, value, given.mttr, False, given.pool, note)
    assert given.availability is not None  # ComponentSpec checked one of the two ways
    mttr = given.mttr if given.mttr is not None else ASSUMED_MTTR_S
    return Component(path, name, given.availability, mttr, given.mttr is None, given.pool, note)


def _block(spec: ArchSpec, item: str | BlockSpec, path: str) -> Block:
    if isinstance(item, str):
        return _component(spec, item, path)
    kind = item.kind
    where = f"{path}.{kind}"
    if item.series is not None:
        return Series(where, tuple(_block(spec, child, f"{where}[{i}]")
                                   for i, child in enumerate(item.series)))
    if item.standby is not None:
        return _standby(spec, item.standby, where)
    group: GroupSpec | list[str | BlockSpec] | None = item.parallel or item.k_of_n
    if isinstance(group, list):
        return Parallel(where, tuple(_block(spec, child, f"{where}[{i}]")
                                     for i, child in enumerate(group)))
    assert group is not None  # BlockSpec checked that it has exactly one kind
    if isinstance(group.of, list):
        children = [_block(spec, child, f"{where}.of[{i}]") for i, child in enumerate(group.of)]
    else:
        children = [_component(spec, group.of, f"{where}.of[{i}]")
                    for i in range(group.count or 0)]
    common, children = _common_cause(children, group.beta, where)
    inner = where if common is None else f"{where}.independent"
    made: Block = (KofN(inner, group.k, tuple(children)) if isinstance(group, KofNSpec)
                   else Parallel(inner, tuple(children)))
    if common is None:
        return made
    return Series(where, (common, made), f"{made.label} with common cause")


def _common_cause(
    members: list[Block], beta: float, path: str
) -> tuple[Component | None, list[Block]]:
    leaves = [member for member in members if isinstance(member, Component)]
    if beta <= 0 or len(leaves) != len(members):
        return None, members
    steadiest = max(leaves, key=lambda leaf: leaf.availability)
    common_a = 1 - beta * (1 - steadiest.availability)
    common = Component(f"{path}.beta", steadiest.name, common_a, steadiest.mttr_s,
                       steadiest.mttr_assumed, None, "common cause")
    own = [Component(leaf.path, leaf.name, min(1.0, leaf.availability / common_a), leaf.mttr_s,
                     leaf.mttr_assumed, leaf.pool, "independent part") for leaf in leaves]
    return common, list(own)


def _standby(spec: ArchSpec, given: StandbySpec, where: str) -> Block:
    primary = _component(spec, given.primary, f"{where}.primary")
    backup = _component(spec, given.backup, f"{where}.backup")
    common, parts = _common_cause([primary, backup], given.beta, where)
    own_primary, own_backup = parts
    assert isinstance(own_primary, Component) and isinstance(own_backup, Component)
    inner = where if common is None else f"{where}.independent"
    made = Standby(inner, own_primary, own_backup, given.failover_success, given.failover_time)
    if common is None:
        return made
    return Series(where, (common, made), f"{made.label} with common cause")


__all__ = ["ASSUMED_MTTR_S", "ArchError", "build", "load_arch", "parse_arch"]
