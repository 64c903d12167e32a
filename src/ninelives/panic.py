"""Panic: when too few servers pass their checks, trust the checks less.

Envoy's panic threshold (50% by default): below it, a cluster balances over all its hosts,
healthy or not, on the grounds that a majority failing its checks more likely means the
checks are wrong (a shared dependency of ``/healthz`` is down) than that the servers are,
and that the survivors would be overloaded anyway. Ours keeps the idea and differs in two
ways, because of what else ninelives has:

- **Tiers come first.** Panic is judged on the tier taking traffic (the active tier), and
  only when no later tier is healthy enough (at or above the threshold) to take over: a
  backup tier is a planned answer, panic a last resort. With no server healthy anywhere,
  panic spreads over the first tier that has servers to spread over.
- **Only servers that answer.** Panic adds the servers whose last check got an answer,
  even a failing one (an HTTP 503, a wrong body, an exit code), never one that refused the
  connection or did not answer in time: a request would meet the same, and a hung server
  would hold every request sent to it until ``timeouts.response``. Ejected servers (live
  traffic saw them fail) stay out too, so if the checks were right after all, the first
  failed requests (retried elsewhere) eject those servers and panic narrows by itself.

Drained and maint servers, and weight 0, are neither counted nor used: an operator took
them out on purpose. The decision is a pure function of the tiers; the pool applies it
when it rebuilds its candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ninelives.pool import Server


@dataclass(frozen=True, slots=True)
class Panic:
    """The pool is in panic: balance over ``servers``; ``reason`` says why."""

    servers: tuple[Server, ...]
    reason: str


def wanted(server: Server) -> bool:
    """Does the operator want new clients sent here (ready, weight above 0)?"""
    # AdminState.READY; a StrEnum compares equal to its value (pool.py imports this module).
    return server.admin_state == "ready" and server.weight > 0


def spreadable(server: Server) -> bool:
    """May panic send clients here: wanted, not ejected (nor benched by live traffic while
    in panic: ``ejected_until`` set), and answering its checks?"""
    return (
        wanted(server) and not server.ejected and not server.ejected_until
        and (server.healthy or server.answering)
    )


def tier_health(tier: Sequence[Server]) -> tuple[int, int]:
    """(available, wanted) servers of one tier."""
    return sum(1 for s in tier if s.is_available()), sum(1 for s in tier if wanted(s))


def below(healthy: int, total: int, threshold: float) -> bool:
    return total > 0 and healthy < threshold * total


def percent(share: float) -> str:
    return f"{share * 100:g}%"


def judge(
    tiers: Sequence[Sequence[Server]], active: int | None, threshold: float
) -> Panic | None:
    """Is the pool in panic, and over which servers does it balance then?

    ``active`` is the tier normal selection chose (the first with an available server),
    None when no tier has one. None is returned when the pool is not in panic, including
    when panic would add no server to those already available.
    """
    if threshold <= 0:
        return None
    if active is not None:
        healthy, total = tier_health(tiers[active])
        if not below(healthy, total, threshold):
            return None
    for later in tiers[(active + 1 if active is not None else 0):]:
        healthy, total = tier_health(later)
        if total and not below(healthy, total, threshold):
            return None  # a backup tier healthy enough takes it
    chosen = active
    if chosen is None:
        chosen = next((i for i, t in enumerate(tiers) if any(spreadable(s) for s in t)), None)
        if chosen is None:
            return None
    tier = tiers[chosen]
    # Servers passing their checks first, so that `first` picks one of them.
    servers = tuple(s for s in tier if s.is_available())
    servers += tuple(s for s in tier if spreadable(s) and not s.is_available())
    healthy, total = tier_health(tier)
    if len(servers) == healthy:
        return None  # nobody to add: every other server refuses, hangs or is ejected
    noun = "server" if total == 1 else "servers"
    reason = (
        f"{healthy} of {total} {noun} of tier {chosen} healthy, below {percent(threshold)}; "
        f"balancing over {len(servers)} that answer their checks"
    )
    return Panic(servers, reason)
