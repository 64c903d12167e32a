"""The HA loop with real ``local`` coordinators on one file, several loops in one process:
who leads, what the member list and the status say, the reason of every role change,
handover on stop, and stepping down when the lease cannot be renewed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ninelives.cluster.coordinator import CoordinatorUnavailable, Entry, Lease
from ninelives.cluster.election import Action, Role
from ninelives.cluster.ha import HaLoop, SwitchoverError
from ninelives.cluster.local import LocalCoordinator
from ninelives.events import EventLog

TTL = 1.0


def run(scenario: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario, 30)

    asyncio.run(bounded())


async def until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


@dataclass
class Readiness:
    why_not: str | None = None

    def __call__(self) -> str | None:
        return self.why_not


class CutOff(LocalCoordinator):
    """A local coordinator that stops answering this node's election calls while ``stuck``
    (a store out of reach, as seen by this node alone)."""

    stuck = False

    async def _hang_while_stuck(self) -> None:
        if self.stuck:
            await asyncio.sleep(3600)

    async def renew(self, lease: Lease) -> Lease:
        if lease.key == "leader":
            await self._hang_while_stuck()
        return await super().renew(lease)

    async def acquire(self, key: str, value: str) -> Lease | None:
        await self._hang_while_stuck()
        return await super().acquire(key, value)

    async def get(self, key: str) -> Entry | None:
        await self._hang_while_stuck()
        return await super().get(key)

    async def release(self, lease: Lease) -> None:
        await self._hang_while_stuck()
        await super().release(lease)


async def node(path: Path, name: str, ready: Readiness | None = None,
               cls: type[LocalCoordinator] = LocalCoordinator) -> HaLoop:
    coordinator = await cls.open(path, TTL)
    loop = HaLoop(coordinator, name, f"{name}:9901", EventLog(), ready or Readiness())
    await loop.start()
    return loop


def role_changes(loop: HaLoop) -> list[tuple[str, str, str]]:
    return [(e.old, e.new, e.reason) for e in loop.events.since() if e.kind == "node"]


def test_one_node_leads_the_other_follows_and_a_stopped_leader_hands_over_at_once(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        db = tmp_path / "cluster.db"
        a = await node(db, "lb-1")
        await until(lambda: a.role is Role.LEADER, what="lb-1 leads")
        b = await node(db, "lb-2")
        await until(lambda: b.decision is not None and b.decision.action is Action.FOLLOW
                    and len(b.members) == 2, what="lb-2 follows and sees both")
        status = b.status()
        assert status["role"] == "follower"
        assert status["leader"]["name"] == "lb-1"
        assert status["leader"]["reason"].startswith("taking the lead: I am lb-1")
        assert status["reason"].startswith("no action: following lb-1, the leader")
        assert [(m["name"], m["role"]) for m in status["members"]] == [
            ("lb-1", "leader"), ("lb-2", "follower")]
        assert role_changes(a) == [("follower", "leader", a.change_reason)]

        stopped_at = time.monotonic()
        await a.stop()
        await until(lambda: b.role is Role.LEADER, what="lb-2 takes the lead")
        # Released, not expired: the follower's watch saw the key go (50 ms polls).
        assert time.monotonic() - stopped_at < TTL / 2
        assert role_changes(a)[-1][:2] == ("leader", "follower")
        assert "the node is stopping" in role_changes(a)[-1][2]
        assert role_changes(b) == [
            ("follower", "leader", "taking the lead: I am lb-2, holding the leader lease "
                                   f"(token {b.status()['leader']['token']})")]
        await until(lambda: [m.name for m in b.members] == ["lb-2"], what="lb-1 left")
        await b.stop()

    run(scenario())


def test_a_node_that_is_not_ready_does_not_take_the_lead(tmp_path: Path) -> None:
    async def scenario() -> None:
        ready = Readiness("no pool has a server")
        a = await node(tmp_path / "cluster.db", "lb-1", ready)
        await until(lambda: a.decision is not None, what="a first decision")
        assert a.decision is not None and a.decision.action is Action.WAIT
        assert a.decision.reason == ("not taking the lead: nobody leads, but I am not ready "
                                     "(no pool has a server)")
        await until(lambda: [m.health for m in a.members] == ["unhealthy"], what="record")
        ready.why_not = None
        await until(lambda: a.role is Role.LEADER, what="lb-1 leads once ready")
        await a.stop()

    run(scenario())


def test_a_leader_that_cannot_renew_steps_down_before_its_lease_can_expire(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        db = tmp_path / "cluster.db"
        a = await node(db, "lb-1", cls=CutOff)
        await until(lambda: a.role is Role.LEADER, what="lb-1 leads")
        b = await node(db, "lb-2")
        assert isinstance(a.coordinator, CutOff)
        a.coordinator.stuck = True
        await until(lambda: a.role is Role.FOLLOWER, timeout=3 * TTL, what="lb-1 steps down")
        old, new, reason = role_changes(a)[-1]
        assert (old, new) == ("leader", "follower")
        assert reason.startswith("stepping down: could not renew within 2/3 of the lease")
        await until(lambda: b.role is Role.LEADER, timeout=3 * TTL, what="lb-2 takes over")
        # lb-2 could only take the key once lb-1's lease had expired, a third of a lease
        # after lb-1 stopped acting as leader.
        stepped_down = [e for e in a.events.since() if e.new == "follower"][-1]
        took_over = [e for e in b.events.since() if e.new == "leader"][-1]
        assert took_over.time - stepped_down.time > TTL / 3 - 0.05, (stepped_down, took_over)
        a.coordinator.stuck = False
        await b.stop()
        await a.stop()

    run(scenario())


def test_a_coordinator_error_is_shown_in_the_status(tmp_path: Path) -> None:
    async def scenario() -> None:
        a = await node(tmp_path / "cluster.db", "lb-1")
        await until(lambda: a.role is Role.LEADER, what="lb-1 leads")
        a._failed(str(CoordinatorUnavailable("renew", "no answer within 0.33s")))
        assert a.status()["error"] == "renew: no answer within 0.33s"
        await a.stop()

    run(scenario())


def test_a_switchover_asked_of_any_node_hands_the_lead_to_the_named_node(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        db = tmp_path / "cluster.db"
        a = await node(db, "lb-1")
        await until(lambda: a.role is Role.LEADER, what="lb-1 leads")
        b, c = await node(db, "lb-2"), await node(db, "lb-3")
        await until(lambda: len(b.members) == 3, what="lb-2 sees every node")
        with pytest.raises(SwitchoverError, match="no node named lb-7") as refused:
            await b.switchover("lb-7")
        assert refused.value.status == 404
        with pytest.raises(SwitchoverError, match="lb-1 already leads"):
            await b.switchover("lb-1")
        done = await b.switchover("lb-3")  # asked of a follower that is not the successor
        assert (done["from"], done["to"]) == ("lb-1", "lb-3")
        assert done["took_s"] < TTL, done
        await until(lambda: c.role is Role.LEADER, what="lb-3 leads")
        assert role_changes(a)[-1] == (
            "leader", "follower", "stepping down: switchover requested, handing the lead to lb-3")
        assert role_changes(b) == []  # lb-2 never led
        for loop in (a, b, c):
            await loop.stop()

    run(scenario())
