"""Who served while this node was not running: asked of the cluster once, at start.

A node that was killed, or stopped, records the time until it serves again as downtime of
its listeners, unless the cluster shows that another node served meanwhile. The members'
records say it: every live member carries its role and since when it has had it
(``since``), renewed under a lease, so a member listed now has been alive since then.
In active-passive mode the node that serves is the leader (the VIP is on it); in
active-active every healthy member serves. :func:`served_from` is the pure decision;
:func:`peers_at_start` reads the records (a thin shell, bounded in time).

A peer that served during the gap but is gone by the time this node starts again is not
seen: that time is counted as downtime, the cautious side.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ninelives.cluster.connect import open_coordinator
from ninelives.cluster.coordinator import CoordinatorError, Member
from ninelives.config import ClusterConfig

log = logging.getLogger("ninelives.cluster")


@dataclass(frozen=True, slots=True)
class Coverage:
    """Another node has served without a break from ``since`` until now."""

    since: float
    by: str  # its name

    def describe(self) -> str:
        return f"{self.by} served meanwhile"


def served_from(members: Sequence[Member], me: str, mode: str) -> Coverage | None:
    """The earliest moment from which another member has served until now: the leader's
    ``since`` (active-passive) or the earliest of the healthy members' (active-active).
    None when no other member serves (or one does not say since when)."""
    serving = "active" if mode == "active-active" else "leader"
    found = [m for m in members
             if m.name != me and m.role == serving and m.health == "healthy" and m.since > 0]
    if not found:
        return None
    first = min(found, key=lambda m: (m.since, m.name))
    return Coverage(first.since, first.name)


async def peers_at_start(config: ClusterConfig, me: str) -> list[Member]:
    """The members' records now, or [] (logged) when the coordinator cannot be read within
    a lease: the start is not held up, and the gap then counts as downtime."""
    try:
        async with asyncio.timeout(config.lease_ttl):
            coordinator = await open_coordinator(config)
            try:
                return await coordinator.members()
            finally:
                await coordinator.close()
    except (CoordinatorError, TimeoutError) as exc:
        log.warning("cluster: could not read the members at start (%s); the time %s was "
                    "not running counts as downtime", exc or "timed out", me)
        return []
