"""Common cause (``beta``) on a redundant group, the beta-factor model; pure, no I/O.

A group (``parallel``, ``k_of_n`` or ``standby``) has members ``M_i``: components or
nested blocks, alike or not, each with its unavailability ``U_i`` and its outage
frequency ``f_i`` (outages per second in the steady state). With ``beta``:

- the common cause ``C`` is one failure process, shared by the group, that takes every
  member down at once. It is down the share ``beta`` of the time of the member that is
  down least, and fails the share ``beta`` as often as the member that fails least
  often: ``U_C = beta * min(U_i)``, ``f_C = beta * min(f_i)``, so its mean repair time
  is ``U_C / f_C``. For identical members this is the classic split of each member's
  failures into the share ``beta`` common and ``1 - beta`` its own; for different ones
  the common cause is never more than ``beta`` of any member's figures;
- each member keeps its own availability overall: its own part, independent of ``C``
  and of the other members, has ``A_i' = A_i / A_C``, so that ``A_C * A_i' = A_i``. A
  component's own part is the same component with that availability and the same
  repair time (it fails less often). A nested block's own part is an
  :class:`~ninelives.model.blocks.OwnPart`: its outages, of which the share
  ``keep = U_i' / U_i`` remains;
- the group becomes ``series(C, group of own parts)``.

A component given by availability alone has no failure rate of its own: its frequency
comes from the repair time assumed for it (one hour unless ``mttr`` is given). The
shares are taken of unavailability, so the exact availability does not depend on that
assumption; only the simulated repair times of ``C`` do.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from ninelives.model.blocks import (
    Block,
    Component,
    KofN,
    OwnPart,
    Parallel,
    Series,
    Standby,
    at_least,
    availability,
)


def frequency(block: Block) -> float:
    """Outages of ``block`` per second, in the steady state.

    For independent members a block goes down when a member fails while the others are
    in the one state where that failure matters (``f = sum(f_i * dA/dA_i)``, exact for
    series, parallel and k of n). A standby is approximate: the primary's failures that
    the failover does not cover, plus one switch per covered failure, plus the backup's
    failures while it covers.
    """
    if isinstance(block, Component):
        return 0.0 if block.availability >= 1 else (1 - block.availability) / block.mttr_s
    if isinstance(block, OwnPart):
        return block.keep * frequency(block.child)
    if isinstance(block, Standby):
        p, a_b = block.success, block.backup.availability
        f_p = frequency(block.primary)
        switches = f_p * p * a_b if block.switch_s > 0 else 0.0
        return (f_p * (1 - p * a_b) + switches
                + p * (1 - block.primary.availability) * frequency(block.backup))
    values = [availability(child) for child in block.children]
    total = 0.0
    for index, child in enumerate(block.children):
        others = values[:index] + values[index + 1:]
        if isinstance(block, Series):
            matters = math.prod(others)
        elif isinstance(block, Parallel):
            matters = math.prod(1 - v for v in others)
        else:
            assert isinstance(block, KofN)
            matters = at_least(block.k - 1, others) - at_least(block.k, others)
        total += frequency(child) * matters
    return total


def common_cause(
    members: Sequence[Block], slots: Sequence[str], beta: float, path: str
) -> tuple[Component | None, list[Block]]:
    """The common cause of a group (at ``PATH.beta``) and its members' own parts (a
    nested member's at its ``slot``), or ``None`` and the members unchanged when the
    group has no common cause."""
    unavailable = [1 - availability(member) for member in members]
    least = min(unavailable)
    rarest = min(frequency(member) for member in members)
    u_c = beta * least
    if u_c <= 0 or rarest <= 0:
        return None, list(members)
    a_c = 1 - u_c
    leaves = [member for member in members if isinstance(member, Component)]
    names = list(dict.fromkeys(leaf.name for leaf in leaves))
    name = "+".join(names) if len(leaves) == len(members) else "group"
    # its mean repair time, U_C / f_C = beta * min(U_i) / (beta * min(f_i))
    common = Component(f"{path}.beta", name, a_c, least / rarest, False, None, "common cause")
    own: list[Block] = []
    for member, slot, u in zip(members, slots, unavailable, strict=True):
        own_a = min(1.0, (1 - u) / a_c)
        if isinstance(member, Component):
            own.append(dataclasses.replace(member, availability=own_a, note="independent part"))
        else:
            own.append(OwnPart(slot, member, max(0.0, (1 - own_a) / u)))
    return common, own
