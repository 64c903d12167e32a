"""What is particular to the SQLite coordinator: its clock, reboots, its snapshot watch.

A fake clock stands for CLOCK_MONOTONIC; every coordinator of a test reads the same one,
as every process of a machine reads the same CLOCK_MONOTONIC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from ninelives.cluster.coordinator import (
    Change,
    ChangeKind,
    CoordinatorUnavailable,
    LeaseLost,
    Member,
    prefix_end,
)
from ninelives.cluster.local import LocalCoordinator, _Row, diff

TTL = 2.0


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(scenario: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(30):
            await scenario

    asyncio.run(bounded())


async def open_local(path: Path, clock: FakeClock, boot: str = "boot-1") -> LocalCoordinator:
    return await LocalCoordinator.open(path, TTL, clock=clock, boot_id=boot, poll_interval=0.001)


def test_expiry_follows_the_injected_clock_not_the_wall(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        one = await open_local(tmp_path / "c.db", clock)
        two = await open_local(tmp_path / "c.db", clock)
        held = await one.acquire("leader", "lb-1")
        assert held is not None and held.deadline == 1000.0 + TTL
        clock.now = held.deadline - 0.001
        assert await two.acquire("leader", "lb-2") is None
        renewed = await one.renew(held)
        assert renewed.renewed_at == clock.now and renewed.token == held.token
        clock.now = renewed.deadline  # expiry is inclusive: at the deadline it is gone
        assert await two.get("leader") is None
        taken = await two.acquire("leader", "lb-2")
        assert taken is not None and taken.token > held.token
        with pytest.raises(LeaseLost, match="now held with token"):
            await one.renew(renewed)
        await one.close()
        await two.close()

    run(scenario())


def test_a_reboot_voids_old_leases_but_keeps_plain_keys_and_the_revision(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock(now=5000.0)
        before = await open_local(tmp_path / "c.db", clock, boot="boot-1")
        held = await before.acquire("leader", "lb-1")
        member = await before.register(Member("lb-1", "127.0.0.1:9901", "leader", "healthy"))
        state = await before.compare_and_set("state/a1", "drain", None)
        assert held is not None
        await before.close()
        # After a reboot the monotonic clock starts again near zero, far below the expiry
        # stored in the file: without the boot id the old lease would live for 5000 s.
        clock.now = 3.0
        after = await open_local(tmp_path / "c.db", clock, boot="boot-2")
        assert await after.get("leader") is None
        assert await after.members() == []
        assert await after.get("state/a1") == state
        with pytest.raises(LeaseLost):
            await after.renew(held)
        with pytest.raises(LeaseLost, match="gone"):
            await after.renew(member)
        again = await after.acquire("leader", "lb-2")
        assert again is not None and again.token > max(held.token, state.version)
        await after.close()

    run(scenario())


def test_tokens_keep_growing_across_reopening_the_file(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        tokens = []
        for _ in range(3):
            coordinator = await open_local(tmp_path / "c.db", clock)
            lease = await coordinator.acquire("leader", "lb-1")
            assert lease is not None
            tokens.append(lease.token)
            await coordinator.release(lease)
            await coordinator.close()
        assert tokens == sorted(set(tokens))

    run(scenario())


def test_the_watch_reports_an_expiry_without_anyone_writing(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        coordinator = await open_local(tmp_path / "c.db", clock)
        held = await coordinator.acquire("leader", "lb-1")
        assert held is not None
        async with coordinator.watch("leader") as watch:
            changes = aiter(watch)
            clock.now = held.deadline
            change = await anext(changes)
            assert (change.kind, change.key, change.value) == (ChangeKind.DELETE, "leader", None)
        await coordinator.close()

    run(scenario())


def test_bad_member_records_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        coordinator = await open_local(tmp_path / "c.db", FakeClock())
        await coordinator.compare_and_set("members/x", "not json at all {", None)
        await coordinator.compare_and_set("members/y", '{"name": "y", "role": "king"}', None)
        good = Member("lb-1", "127.0.0.1:9901", "follower", "healthy")
        await coordinator.register(good)
        assert await coordinator.members() == [good]
        await coordinator.close()

    run(scenario())
    assert "member record members/y skipped: unknown role 'king'" in caplog.text


def test_a_closed_coordinator_is_unavailable(tmp_path: Path) -> None:
    async def scenario() -> None:
        coordinator = await open_local(tmp_path / "c.db", FakeClock())
        await coordinator.close()
        await coordinator.close()  # twice is fine
        with pytest.raises(CoordinatorUnavailable, match=r"get: .*closed"):
            await coordinator.get("leader")

    run(scenario())


def row(key: str, created: int, modified: int, value: str = "v") -> _Row:
    return _Row(key, value, created, modified, None, None)


def test_diff_reports_puts_in_order_and_a_new_holder_as_delete_then_put() -> None:
    before = {"a": row("a", 1, 1), "b": row("b", 2, 5), "c": row("c", 3, 3)}
    after = {"a": row("a", 1, 1), "b": row("b", 2, 7, "w"), "c": row("c", 8, 8, "new"),
             "d": row("d", 6, 6)}
    assert diff(before, after, 9) == [
        Change(ChangeKind.DELETE, "c", None, 9),
        Change(ChangeKind.PUT, "d", "v", 6),
        Change(ChangeKind.PUT, "b", "w", 7),
        Change(ChangeKind.PUT, "c", "new", 8),
    ]
    assert diff(after, {}, 10) == [Change(ChangeKind.DELETE, k, None, 10) for k in "abcd"]


def test_prefix_end() -> None:
    assert prefix_end(b"/nl/members/") == b"/nl/members0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\x00"


def test_member_records_round_trip_and_bad_ones_say_why() -> None:
    member = Member("lb-1", "10.0.0.1:9901", "leader", "healthy", "took the lead")
    assert Member.from_json(member.to_json()) == member
    with pytest.raises(ValueError, match="unknown health 'meh'"):
        Member.from_json('{"name": "a", "address": "b", "role": "leader", "health": "meh"}')
    with pytest.raises(ValueError, match="expected a JSON object"):
        Member.from_json("[1]")
