"""The architecture file as pydantic models: components and the block tree of the system.

```yaml
components:
  psu:  {availability: 99.9%}
  link: {mtbf: 2000h, mttr: 1h}
system:
  series:
    - parallel: {of: psu, count: 2}
    - parallel: {of: link, count: 2, beta: 0.05}
```

A block is a component's name or a mapping with exactly one of ``series``, ``parallel``,
``k_of_n`` and ``standby``. Unions are tagged with names starting with ``@`` so that the
loader can drop them from the paths it shows (pydantic puts the tag into the location).
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    model_validator,
)

from ninelives.config.fields import Duration, DurationOrZero, ModelProblems, Name, Percent
from ninelives.units import describe_input, parse_percent

BLOCK_KINDS = ("series", "parallel", "k_of_n", "standby")


def _to_share(value: Any) -> float:
    """A common-cause share: ``0.05`` or ``5%``, from 0 to 1. A number the YAML parser
    left as text (``1e-3``: YAML 1.1 wants a dot in a float) is read as a number."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return parse_percent(value)
    number: Any = value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
    if isinstance(number, int | float) and not isinstance(number, bool) and 0 <= number <= 1:
        return float(number)
    raise ValueError(f"expected a share from 0 to 1 like 0.05, or 5%, got {describe_input(value)}")


Share = Annotated[float, PlainValidator(_to_share)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComponentSpec(_Frozen):
    """One component: ``availability``, or ``mtbf`` and ``mttr``; ``availability`` with
    ``mttr`` gives the repair time the simulation uses (else one hour is assumed).
    ``repair``: how repair times spread around ``mttr``, exponential (the default) or
    fixed (every repair takes ``mttr``, as a scripted restart does)."""

    availability: Percent | None = None
    mtbf: Duration | None = None
    mttr: Duration | None = None
    pool: Name | None = None
    repair: Literal["exponential", "fixed"] = "exponential"

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        items: list[tuple[tuple[str | int, ...], str]] = []
        if self.availability is not None and self.mtbf is not None:
            items.append((("mtbf",), "give availability or mtbf + mttr, not both"))
        elif self.availability is None and self.mtbf is None:
            items.append(((), "expected availability, or mtbf and mttr"))
        elif self.mtbf is not None and self.mttr is None:
            items.append((("mttr",), "required with mtbf"))
        if self.availability is not None and self.availability <= 0:
            items.append((("availability",), "expected an availability above 0%"))
        if items:
            raise ModelProblems(items)
        return self


def _block_tag(value: Any) -> str:
    return "@name" if isinstance(value, str | int) and not isinstance(value, bool) else "@block"


def _members_tag(value: Any) -> str:
    return "@list" if isinstance(value, list) else "@name"


GroupT = TypeVar("GroupT", bound="MembersSpec")


def _list_or_group(value: Any) -> str:
    return "@list" if isinstance(value, list) else "@group"


class BlockSpec(_Frozen):
    """A block as a mapping: exactly one of its four keys."""

    series: ListOr[SeriesSpec] | None = None
    parallel: ListOr[GroupSpec] | None = None
    k_of_n: KofNSpec | None = None
    standby: StandbySpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [key for key in BLOCK_KINDS if key in data]
            if len(given) != 1:
                raise ValueError(
                    "expected a component name or a block with exactly one of "
                    f"{', '.join(BLOCK_KINDS)}, got "
                    + (", ".join(given) if given else describe_input(data))
                )
        return data

    @property
    def kind(self) -> str:
        return next(key for key in BLOCK_KINDS if getattr(self, key) is not None)


BlockItem = Annotated[
    Annotated[Name, Tag("@name")] | Annotated[BlockSpec, Tag("@block")],
    Discriminator(_block_tag),
]
# ``[blocks]`` or a group mapping (``{of, count}``): series and parallel take either.
ListOr = Annotated[
    Annotated[list[BlockItem], Field(min_length=1), Tag("@list")]
    | Annotated[GroupT, Tag("@group")],
    Discriminator(_list_or_group),
]
Members = Annotated[
    Annotated[Name, Tag("@name")]
    | Annotated[list[BlockItem], Field(min_length=1), Tag("@list")],
    Discriminator(_members_tag),
]


class MembersSpec(_Frozen):
    """``{of: NAME, count: N}`` (N identical copies) or ``{of: [blocks]}``."""

    of: Members
    count: Annotated[int, Field(ge=1)] | None = None

    def member_count(self) -> int:
        if isinstance(self.of, list):
            return len(self.of)
        return self.count or 0

    def shape_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        if isinstance(self.of, list) and self.count is not None:
            return [(("count",), "only with of: NAME (a list gives its members itself)")]
        if not isinstance(self.of, list) and self.count is None:
            return [(("count",), "required with of: NAME")]
        return []

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if items := self.shape_problems():
            raise ModelProblems(items)
        return self


class SeriesSpec(MembersSpec):
    """Members that are all needed: ``{of: NAME, count: N}`` or ``{of: [blocks]}``."""

    beta: Share | None = None  # accepted only to say where it belongs

    def shape_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        problems = super().shape_problems()
        if self.beta is not None:
            problems.append((("beta",), "only on a redundant group: parallel, k_of_n or "
                                        "standby (members in series do not back each other up)"))
        return problems


class GroupSpec(MembersSpec):
    """A redundant group; ``beta`` is the share of its members' failures that take every
    member down at once (common cause, see :mod:`ninelives.model.common_cause`)."""

    beta: Share = 0.0


class KofNSpec(GroupSpec):
    """At least ``k`` of the members up: ``{k: 2, of: server, count: 3}``."""

    k: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _k_fits(self) -> Self:
        n = self.member_count()
        if n and self.k > n:
            raise ModelProblems([(("k",), f"expected at most {n} (the number of members), "
                                          f"got {self.k}")])
        return self


class StandbySpec(_Frozen):
    """A primary and a backup that takes over when the primary fails, if the failover
    works (``failover_success``), after ``failover_time``."""

    primary: Name
    backup: Name
    failover_success: Percent = 1.0
    failover_time: DurationOrZero = 0.0
    beta: Share = 0.0


class ArchSpec(_Frozen):
    """The whole file."""

    components: Annotated[dict[Name, ComponentSpec], Field(min_length=1)]
    system: BlockItem


BlockSpec.model_rebuild()
MembersSpec.model_rebuild()
SeriesSpec.model_rebuild()
GroupSpec.model_rebuild()
KofNSpec.model_rebuild()
ArchSpec.model_rebuild()
