"""The block tree and its exact steady-state availability; pure functions, no I/O.

Every block is independent of every other (each appearance of a component is its own
copy), so availability composes:

- a component: ``A = MTBF / (MTBF + MTTR)``, or its given availability;
- series: ``A = prod(A_i)``;
- parallel: ``A = 1 - prod(1 - A_i)``;
- k of n: the probability that at least ``k`` members are up, summed exactly over the
  number of members up (a polynomial product, so different members are exact too);
- standby (primary P, backup B, failover success ``p``, switch time ``t``): service is
  down while P is down unless the failover worked and B is up, plus the switch time
  after each failure of P that the failover covers:
  ``U = (1 - A_P) * (1 - p * A_B) + f_P * p * A_B * m``, with ``f_P = 1 / (MTBF_P +
  MTTR_P)`` the failure frequency of P and ``m = E[min(t, repair)]`` the expected switch
  time within an outage (a repair shorter than ``t`` ends it first): ``MTTR_P * (1 -
  exp(-t / MTTR_P))`` for exponential repairs, ``min(t, MTTR_P)`` for fixed ones.

Common cause (``beta``) is no block of its own kind: :mod:`ninelives.model.common_cause`
rewrites a group with ``beta > 0`` into ``series(common cause, group of own parts)``, so
everything here handles independent blocks only. A member that is a nested block keeps
its own part as an :class:`OwnPart`: the share ``keep`` of its outages (``U' = keep * U``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

YEAR_S = 365 * 86_400


Repair = Literal["exponential", "fixed"]


@dataclass(frozen=True, slots=True)
class Component:
    """A leaf: its availability and the repair time the simulation draws from (its mean;
    ``repair`` says how repair times spread: exponential, or always the mean)."""

    path: str
    name: str
    availability: float
    mttr_s: float
    mttr_assumed: bool = False
    pool: str | None = None
    note: str = ""
    repair: Repair = "exponential"

    @property
    def mtbf_s(self) -> float:
        """Mean up time between failures; infinite for a component that never fails."""
        if self.availability >= 1:
            return math.inf
        return self.mttr_s * self.availability / (1 - self.availability)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.note})" if self.note else self.name


@dataclass(frozen=True, slots=True)
class Series:
    path: str
    children: tuple[Block, ...]
    title: str = ""  # a group with common cause is a series; it keeps the group's name

    @property
    def label(self) -> str:
        return self.title or f"series of {len(self.children)}"


@dataclass(frozen=True, slots=True)
class Parallel:
    path: str
    children: tuple[Block, ...]

    @property
    def label(self) -> str:
        return f"parallel {_members(self.children)}"


@dataclass(frozen=True, slots=True)
class KofN:
    path: str
    k: int
    children: tuple[Block, ...]

    @property
    def label(self) -> str:
        return f"{self.k} of {_members(self.children)}"


@dataclass(frozen=True, slots=True)
class Standby:
    path: str
    primary: Component
    backup: Component
    success: float
    switch_s: float
    children: tuple[Block, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", (self.primary, self.backup))

    @property
    def label(self) -> str:
        return f"standby {self.primary.name} -> {self.backup.name}"

    def switch_within_outage_s(self) -> float:
        """Expected switch time inside one outage of the primary: ``E[min(t, repair)]``."""
        mttr = self.primary.mttr_s
        if self.switch_s <= 0 or mttr <= 0:
            return 0.0
        if self.primary.repair == "fixed":
            return min(self.switch_s, mttr)
        return mttr * -math.expm1(-self.switch_s / mttr)


@dataclass(frozen=True, slots=True)
class OwnPart:
    """A nested block in a group with common cause, without the common-cause share of its
    outages: each outage of ``child`` is kept with probability ``keep``."""

    path: str
    child: Block
    keep: float
    children: tuple[Block, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", (self.child,))

    @property
    def label(self) -> str:
        return f"{self.child.label} (independent part)"


Block = Component | Series | Parallel | KofN | Standby | OwnPart
KINDS: dict[type, str] = {Component: "component", Series: "series", Parallel: "parallel",
                          KofN: "k_of_n", Standby: "standby", OwnPart: "independent_part"}


def _members(children: Sequence[Block]) -> str:
    names = {child.name for child in children if isinstance(child, Component)}
    if len(names) == 1 and all(isinstance(child, Component) for child in children):
        return f"{len(children)}x {names.pop()}"
    return f"{len(children)} blocks"


def at_least(k: int, availabilities: Sequence[float]) -> float:
    """P(at least ``k`` of independent members up): the exact k-of-n availability."""
    n = len(availabilities)
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if len(set(availabilities)) == 1:  # identical members: the binomial sum
        a = availabilities[0]
        return math.fsum(math.comb(n, i) * a**i * (1 - a) ** (n - i) for i in range(k, n + 1))
    # ways[j]: P(exactly j members up among those seen so far)
    ways = [1.0] + [0.0] * n
    for seen, a in enumerate(availabilities, start=1):
        for j in range(seen, 0, -1):
            ways[j] = ways[j] * (1 - a) + ways[j - 1] * a
        ways[0] *= 1 - a
    return math.fsum(ways[k:])


def standby_availability(block: Standby, primary: float, backup: float) -> float:
    p = block.success
    primary_mttr = block.primary.mttr_s
    frequency = (1 - primary) / primary_mttr if primary_mttr > 0 else 0.0
    down = (1 - primary) * (1 - p * backup) + frequency * p * backup * (
        block.switch_within_outage_s()
    )
    return min(1.0, max(0.0, 1 - down))


def combine(block: Block, values: Sequence[float]) -> float:
    """A block's availability from its children's (in the order of ``children``)."""
    if isinstance(block, Component):
        return block.availability
    if isinstance(block, Series):
        return math.prod(values)
    if isinstance(block, Parallel):
        return 1 - math.prod(1 - v for v in values)
    if isinstance(block, KofN):
        return at_least(block.k, values)
    if isinstance(block, OwnPart):
        return 1 - block.keep * (1 - values[0])
    return standby_availability(block, values[0], values[1])


def availability(block: Block) -> float:
    """The exact steady-state availability of ``block``."""
    if isinstance(block, Component):
        return block.availability
    return combine(block, [availability(child) for child in block.children])


def walk(block: Block) -> Iterator[Block]:
    """Every block of the tree, parents before their children."""
    yield block
    if not isinstance(block, Component):
        for child in block.children:
            yield from walk(child)


@dataclass(frozen=True, slots=True)
class Importance:
    """What the system would gain if ``block`` never failed (Birnbaum importance times the
    block's unavailability), and the block's own availability."""

    path: str
    label: str
    kind: str
    availability: float
    gain: float


def importance(root: Block) -> tuple[float, list[Importance]]:
    """The system's availability and every block's gain if it were perfect, largest first.

    Each block's availability is computed once; making one block perfect recomputes only
    its ancestors, from their other children's cached values.
    """
    values: dict[int, float] = {}
    parents: dict[int, Series | Parallel | KofN | Standby | OwnPart] = {}

    def fill(block: Block) -> float:
        if isinstance(block, Component):
            value = block.availability
        else:
            for child in block.children:
                parents[id(child)] = block
            value = combine(block, [fill(child) for child in block.children])
        values[id(block)] = value
        return value

    system = fill(root)
    gains: list[Importance] = []
    for block in walk(root):
        if block is root:
            continue
        changed, value = block, 1.0
        while id(changed) in parents:
            parent = parents[id(changed)]
            inputs = [value if child is changed else values[id(child)]
                      for child in parent.children]
            changed, value = parent, combine(parent, inputs)
        gains.append(Importance(block.path, block.label, KINDS[type(block)],
                                values[id(block)], max(0.0, value - system)))
    gains.sort(key=lambda item: -item.gain)
    return system, gains
