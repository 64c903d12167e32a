"""Shared operator settings between active-active nodes, in one process: each "node" is a
SharedState with its own real ``local`` coordinator on one file and its own real Pools.
What one writes, the others apply (with where it came from); two writes at once both
land; a node that starts takes what is there; an unreachable coordinator changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from ninelives.cluster.coordinator import CoordinatorUnavailable, Member
from ninelives.cluster.ha import HaLoop
from ninelives.cluster.local import LocalCoordinator
from ninelives.cluster.shared import SharedState
from ninelives.cluster.sharing import runtime_key
from ninelives.config.models import PoolConfig
from ninelives.events import EventLog
from ninelives.pool import AdminState, Pool
from ninelives.states import Health
from tests.support.aio import until
from tests.support.unreachable import Unanswering

TTL = 1.0


def run(scenario: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario, 30)

    asyncio.run(bounded())


class Node:
    """One node's pools, events and shared state."""

    def __init__(self, name: str, coordinator: LocalCoordinator, *servers: str) -> None:
        self.events = EventLog()
        config = PoolConfig.model_validate({"servers": [
            {"name": s, "address": f"127.0.0.1:{8001 + i}"} for i, s in enumerate(servers)]})
        self.pools = {"app": Pool("app", config, events=self.events, initial=Health.UP)}
        self.shared = SharedState(coordinator, name, lambda: self.pools)

    def server(self, name: str) -> tuple[AdminState, int]:
        server = self.pools["app"].by_name[name]
        return server.admin_state, server.weight


async def open_local(path: Path) -> LocalCoordinator:
    return await LocalCoordinator.open(path, TTL)


def test_a_change_on_one_node_applies_on_the_others_and_says_where_from(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "cluster.db"
        lb1 = Node("lb-1", await open_local(path), "b1", "b2")
        lb2 = Node("lb-2", await open_local(path), "b1", "b2")
        lb3 = Node("lb-3", await open_local(path), "b1")  # has no b2: ignores it
        try:
            for node in (lb1, lb2, lb3):
                await node.shared.start()
            await lb1.shared.change("app", "b1", state=AdminState.DRAIN)
            assert lb1.server("b1") == (AdminState.DRAIN, 1)  # here at once
            await lb2.shared.change("app", "b2", weight=7)
            for node in (lb1, lb2):
                await until(lambda n=node: n.server("b1") == (AdminState.DRAIN, 1)
                            and n.server("b2") == (AdminState.READY, 7), "both changes")
            await until(lambda: lb3.server("b1") == (AdminState.DRAIN, 1), "lb-3's drain")
            reasons = [(e.entity, e.new, e.reason) for e in lb2.events.since(0, 100)
                       if e.kind == "server"]
            assert reasons == [("app/b1", "drain", "drain on lb-1")]

            # A node that starts later takes what is there.
            late = Node("lb-4", await open_local(path), "b1", "b2")
            await late.shared.start()
            assert (late.server("b1"), late.server("b2")) == (
                (AdminState.DRAIN, 1), (AdminState.READY, 7))
            await late.shared.stop()
        finally:
            for node in (lb1, lb2, lb3):
                await node.shared.stop()
                await node.shared.coordinator.close()

    run(scenario())


def test_changes_made_at_once_on_two_nodes_both_land(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "cluster.db"
        lb1 = Node("lb-1", await open_local(path), "b1", "b2", "b3")
        lb2 = Node("lb-2", await open_local(path), "b1", "b2", "b3")
        try:
            await asyncio.gather(
                lb1.shared.change("app", "b1", state=AdminState.MAINT),
                lb2.shared.change("app", "b2", state=AdminState.DRAIN),
                lb1.shared.change("app", "b3", weight=4),
            )
            entry = await lb1.shared.coordinator.get(runtime_key("app"))
            assert entry is not None
            for node in (lb1, lb2):
                await node.shared.sync()
                assert [node.server(s) for s in ("b1", "b2", "b3")] == [
                    (AdminState.MAINT, 1), (AdminState.DRAIN, 1), (AdminState.READY, 4)]
        finally:
            for node in (lb1, lb2):
                await node.shared.coordinator.close()

    run(scenario())


def test_an_unreachable_coordinator_changes_nothing_anywhere(tmp_path: Path) -> None:
    async def scenario() -> None:
        cut_off = await Unanswering.open(tmp_path / "cluster.db", TTL)
        node = Node("lb-1", cut_off, "b1")
        try:
            with pytest.raises(CoordinatorUnavailable, match=r"get: no answer within 0\.33s"):
                await node.shared.change("app", "b1", state=AdminState.DRAIN)
            assert node.server("b1") == (AdminState.READY, 1)
        finally:
            await cut_off.close()

    run(scenario())


def test_active_active_loops_carry_each_nodes_view_and_hand_on_what_they_read(
    tmp_path: Path,
) -> None:
    """The HA loop in active-active: the member record carries the view; a change of it is
    read by the other node's watch well inside the renewal period (a third of the lease)."""

    async def scenario() -> None:
        path = tmp_path / "cluster.db"
        views: dict[str, dict[str, tuple[str, ...]]] = {"lb-1": {}, "lb-2": {}}
        seen: dict[str, list[Member]] = {"lb-1": [], "lb-2": []}
        loops = []
        for name in ("lb-1", "lb-2"):
            loop = HaLoop(await open_local(path), name, f"{name}:9901", EventLog(),
                          lambda: None, "active-active",
                          view=lambda n=name: views[n],
                          on_members=lambda members, n=name: seen[n].extend(members))
            await loop.start()
            loops.append(loop)
        try:
            await until(lambda: {m.name for m in loops[0].members} == {"lb-1", "lb-2"},
                        "lb-1 sees both nodes")
            views["lb-2"] = {"keyed": ("b2",)}
            changed_at = time.monotonic()
            loops[1].touch()
            await until(lambda: any(m.name == "lb-2" and m.down == {"keyed": ("b2",)}
                                    for m in seen["lb-1"]), "lb-1 reads lb-2's view")
            assert time.monotonic() - changed_at < TTL / 3
            assert loops[0].status()["role"] == "active"
        finally:
            for loop in loops:
                await loop.stop()

    run(scenario())
