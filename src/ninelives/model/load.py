"""From an architecture file to a block tree, or an ArchError listing every problem.

Problems carry the path the user wrote: ``system.series[1].parallel.of: no component
named "lnk"``. The names a block refers to are checked on the raw data, so that they are
reported together with the field problems pydantic finds.

Decisions the tree makes explicit:

- A component given by availability alone has no repair time; the simulation needs one,
  so ``ASSUMED_MTTR_S`` (one hour) is assumed and the output says so. Give ``mttr`` with
  the availability to set it.
- ``beta`` (common cause, the beta-factor model) on a ``parallel``, ``k_of_n`` or
  ``standby``: the group becomes ``series(C, group of own parts)`` at the group's path,
  with ``C`` at ``PATH.beta`` and the group of own parts at ``PATH.independent`` (see
  :mod:`ninelives.model.common_cause` for the figures of each).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ninelives.config.errors import ConfigError, problem, problems_from
from ninelives.config.fields import Loc, as_name
from ninelives.config.loader import _load_yaml
from ninelives.model.blocks import Block, Component, KofN, Parallel, Series, Standby
from ninelives.model.common_cause import common_cause
from ninelives.model.spec import (
    BLOCK_KINDS,
    ArchSpec,
    BlockSpec,
    ComponentSpec,
    GroupSpec,
    KofNSpec,
    MembersSpec,
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
    """Names in ``system`` that no component has."""
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
            if kind in ("series", "parallel") and isinstance(body, list):
                members(body, where)
            elif kind in ("series", "parallel", "k_of_n") and isinstance(body, dict):
                members(body.get("of"), (*where, "of"))
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
        return Component(path, name, value, given.mttr, False, given.pool, note, given.repair)
    assert given.availability is not None  # ComponentSpec checked one of the two ways
    mttr = given.mttr if given.mttr is not None else ASSUMED_MTTR_S
    return Component(path, name, given.availability, mttr, given.mttr is None, given.pool, note,
                     given.repair)


def _block(spec: ArchSpec, item: str | BlockSpec, path: str) -> Block:
    if isinstance(item, str):
        return _component(spec, item, path)
    kind = item.kind
    where = f"{path}.{kind}"
    if item.standby is not None:
        return _standby(spec, item.standby, where)
    group: MembersSpec | list[str | BlockSpec] | None = (
        item.series or item.parallel or item.k_of_n)
    if isinstance(group, list):
        listed = tuple(_block(spec, child, f"{where}[{i}]") for i, child in enumerate(group))
        return Series(where, listed) if kind == "series" else Parallel(where, listed)
    assert group is not None  # BlockSpec checked that it has exactly one kind
    slots = [f"{where}.of[{i}]" for i in range(group.member_count())]
    if isinstance(group.of, list):
        members = [_block(spec, child, slot) for child, slot in zip(group.of, slots, strict=True)]
    else:
        members = [_component(spec, group.of, slot) for slot in slots]
    if not isinstance(group, GroupSpec):
        return Series(where, tuple(members))
    common, children = common_cause(members, slots, group.beta, where)
    inner = where if common is None else f"{where}.independent"
    made: Block = (KofN(inner, group.k, tuple(children)) if isinstance(group, KofNSpec)
                   else Parallel(inner, tuple(children)))
    return _with_common_cause(common, made, where)


def _standby(spec: ArchSpec, given: StandbySpec, where: str) -> Block:
    primary = _component(spec, given.primary, f"{where}.primary")
    backup = _component(spec, given.backup, f"{where}.backup")
    common, parts = common_cause([primary, backup], [primary.path, backup.path], given.beta,
                                 where)
    own_primary, own_backup = parts
    assert isinstance(own_primary, Component) and isinstance(own_backup, Component)
    inner = where if common is None else f"{where}.independent"
    made = Standby(inner, own_primary, own_backup, given.failover_success, given.failover_time)
    return _with_common_cause(common, made, where)


def _with_common_cause(common: Component | None, made: Block, where: str) -> Block:
    if common is None:
        return made
    return Series(where, (common, made), f"{made.label} with common cause")


__all__ = ["ASSUMED_MTTR_S", "ArchError", "build", "load_arch", "parse_arch"]
