"""One contract, two coordinators: every test runs against ``local`` (a SQLite file) and
``etcd`` (a real etcd started for this module on loopback).

Times are ``time.monotonic()``: the coordinators' clock, and on Linux the machine-wide
CLOCK_MONOTONIC, so a lease deadline printed by another process compares with ours.
Leases are 1 s on local and 2 s on etcd (the shortest etcd grants with its default
settings). The tests that need several processes start
``tests/support/coordinator_worker.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ninelives.cluster.connect import open_coordinator
from ninelives.cluster.coordinator import (
    Change,
    ChangeKind,
    Conflict,
    Coordinator,
    CoordinatorUnavailable,
    Lease,
    LeaseLost,
    Member,
)
from ninelives.cluster.etcd import EtcdCoordinator
from ninelives.cluster.local import LocalCoordinator
from ninelives.config import ClusterConfig
from tests.conftest import SHARED_PROCESSES
from tests.support.etcd import Etcd, start_etcd
from tests.support.node import Harness, Process, free_port, wait_until

LOCAL_TTL = 1.0
ETCD_TTL = 2.0
SCENARIO_TIMEOUT = 60.0

POLL = 0.02  # seconds between tries of the second acquirer


def run(scenario: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(SCENARIO_TIMEOUT):
            await scenario

    asyncio.run(bounded())


@dataclass
class Store:
    """How to open the coordinator under test, here and in a worker process."""

    kind: str
    ttl: float
    spec: dict[str, Any]

    async def open(self) -> Coordinator:
        """As a node opens it: from its config section."""
        if self.kind == "local":
            section = {"local": {"path": self.spec["path"]}}
        else:
            section = {"etcd": {"endpoints": self.spec["endpoints"], "prefix": self.spec["prefix"]}}
        return await open_coordinator(ClusterConfig.model_validate(
            {"coordinator": self.kind, "lease_ttl": self.ttl, **section}
        ))

    @contextlib.asynccontextmanager
    async def opened(self, count: int = 1) -> AsyncIterator[list[Coordinator]]:
        """``count`` coordinators, each with its own connection, closed at the end."""
        coordinators = [await self.open() for _ in range(count)]
        try:
            yield coordinators
        finally:
            for coordinator in coordinators:
                await coordinator.close()


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    harness = Harness(tmp_path_factory.mktemp("etcd"))
    try:
        yield start_etcd(harness)
    finally:
        harness.stop_all()


@pytest.fixture(params=["local", "etcd"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        spec = {"kind": "local", "path": str(tmp_path / "cluster.db"), "ttl": LOCAL_TTL}
        return Store("local", LOCAL_TTL, spec)
    etcd: Etcd = request.getfixturevalue("etcd_server")
    request.node.stash[SHARED_PROCESSES] = [etcd]
    # Each test in its own prefix: the module shares one etcd.
    prefix = f"/ninelives-test/{uuid.uuid4().hex[:12]}"
    spec = {"kind": "etcd", "endpoints": [etcd.client_url], "prefix": prefix, "ttl": ETCD_TTL}
    return Store("etcd", ETCD_TTL, spec)


def report(store: Store, what: str, seconds: float) -> None:
    # Shown with pytest -s; the README quotes these.
    print(f"\n[{store.kind}] {what}: {seconds * 1000:.0f} ms (lease {store.ttl:g}s)")


class ChangeCollector:
    """Drains a watch in a task, so waiting for a change can time out safely."""

    def __init__(self, changes: AsyncIterator[Change]) -> None:
        self.seen: list[Change] = []
        self.error: BaseException | None = None
        self.arrived = asyncio.Event()
        self._task = asyncio.create_task(self._pump(changes))

    async def _pump(self, changes: AsyncIterator[Change]) -> None:
        try:
            async for change in changes:
                self.seen.append(change)
                self.arrived.set()
        except Exception as error:
            self.error = error
            self.arrived.set()

    async def until(self, predicate: Any, what: str, timeout: float = 10.0) -> Change:
        deadline = time.monotonic() + timeout
        while True:
            for change in self.seen:
                if predicate(change):
                    return change
            if self.error is not None:
                raise AssertionError(f"the watch failed while waiting for {what}: {self.error}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no change {what} within {timeout}s; saw {self.seen}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.arrived.wait()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def acquire_when_free(coordinator: Coordinator, key: str, name: str,
                            timeout: float = 15.0) -> Lease:
    """Acquire as soon as the key is free: on each watch change, and every third of a lease."""
    async with coordinator.watch(key) as watch:
        collector = ChangeCollector(aiter(watch))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    lease = await coordinator.acquire(key, name)
                    if lease is not None:
                        return lease
                    collector.arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(coordinator.ttl / 3):
                            await collector.arrived.wait()
        finally:
            await collector.stop()


# -- one process ---------------------------------------------------------------------------


def test_acquire_renew_release(store: Store) -> None:
    async def scenario() -> None:
        async with store.opened() as (c,):
            before = time.monotonic()
            lease = await c.acquire("leader", "lb-1")
            assert lease is not None
            assert (lease.key, lease.value, lease.ttl) == ("leader", "lb-1", store.ttl)
            assert before <= lease.renewed_at <= time.monotonic()
            assert lease.deadline == lease.renewed_at + store.ttl
            entry = await c.get("leader")
            assert entry is not None
            assert (entry.value, entry.token, entry.leased) == ("lb-1", lease.token, True)

            renewed = await c.renew(lease)
            assert renewed.token == lease.token and renewed.deadline > lease.deadline
            assert await c.acquire("leader", "lb-1") is None  # held, even by the same name

            await c.release(renewed)
            assert await c.get("leader") is None
            await c.release(renewed)  # again: nothing to do, no error
            with pytest.raises(LeaseLost) as lost:
                await c.renew(renewed)
            assert lost.value.phase == "renew"

    run(scenario())


def test_a_second_acquirer_is_blocked_until_the_lease_expires(store: Store) -> None:
    async def scenario() -> None:
        async with store.opened(2) as (first, second):
            held = await first.acquire("leader", "lb-1")
            assert held is not None
            attempts = 0
            give_up = held.deadline + 10.0  # a lease that never expires fails the test
            while (lease := await second.acquire("leader", "lb-2")) is None:
                attempts += 1
                assert time.monotonic() < give_up, "the first lease never expired"
                await asyncio.sleep(POLL)
            acquired_at = time.monotonic()
            # Never before the holder's deadline: the holder may act until then.
            assert acquired_at >= held.deadline, (acquired_at, held.deadline)
            assert attempts > 0 and lease.token > held.token
            entry = await second.get("leader")
            assert entry is not None and (entry.value, entry.token) == ("lb-2", lease.token)
            with pytest.raises(LeaseLost):
                await first.renew(held)
            report(store, "acquired after the holder's deadline (polling every 20 ms)",
                   acquired_at - held.deadline)

    run(scenario())


def test_fencing_tokens_grow_with_every_new_holder(store: Store) -> None:
    async def scenario() -> None:
        async with store.opened(2) as nodes:
            tokens: list[int] = []
            for turn in range(6):
                node = nodes[turn % 2]
                lease = await node.acquire("leader", f"lb-{turn % 2}")
                assert lease is not None
                tokens.append(lease.token)
                renewed = await node.renew(lease)
                assert renewed.token == lease.token  # renewing is not a new holder
                if turn % 2 == 0:
                    await node.compare_and_set(f"noise-{turn}", "x", None)  # other writes
                await node.release(renewed)
            assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens

    run(scenario())


def test_compare_and_set_conflicts(store: Store) -> None:
    async def scenario() -> None:
        async with store.opened(2) as (a, b):
            created = await a.compare_and_set("state/app/a1", "drain", None)
            assert (created.value, created.leased) == ("drain", False)
            with pytest.raises(Conflict) as conflict:
                await b.compare_and_set("state/app/a1", "maint", None)
            assert conflict.value.current == created
            assert conflict.value.phase == "compare_and_set"

            updated = await b.compare_and_set("state/app/a1", "maint", created.version)
            assert updated.version > created.version and updated.token == created.token
            with pytest.raises(Conflict) as stale:
                await a.compare_and_set("state/app/a1", "ready", created.version)
            assert stale.value.current == updated
            assert await a.get("state/app/a1") == updated
            with pytest.raises(Conflict) as absent:
                await a.compare_and_set("state/app/none", "x", updated.version)
            assert absent.value.current is None

    run(scenario())


def test_watch_sees_changes_below_its_prefix(store: Store) -> None:
    async def scenario() -> None:
        async with store.opened(2) as (watcher, writer), watcher.watch("state/") as watch:
            seen = ChangeCollector(aiter(watch))
            first = await writer.compare_and_set("state/a1", "drain", None)
            await writer.compare_and_set("elsewhere", "x", None)
            await seen.until(lambda c: c.key == "state/a1" and c.value == "drain", "put")
            await writer.compare_and_set("state/a1", "ready", first.version)
            await seen.until(lambda c: c.value == "ready", "update")
            lease = await writer.acquire("state/lock", "lb-2")
            assert lease is not None
            await seen.until(lambda c: c.key == "state/lock" and c.value == "lb-2", "acquire")
            await writer.release(lease)
            await seen.until(lambda c: c.key == "state/lock" and c.kind is ChangeKind.DELETE,
                             "release")
            # A lease nobody renews: its key goes away by itself, and the watch says so.
            orphan = await writer.acquire("state/orphan", "lb-3")
            assert orphan is not None
            gone = await seen.until(
                lambda c: c.key == "state/orphan" and c.kind is ChangeKind.DELETE,
                "expiry", timeout=store.ttl + 5,
            )
            assert time.monotonic() >= orphan.deadline and gone.value is None
            await seen.stop()
            assert all(c.key.startswith("state/") for c in seen.seen), seen.seen
            puts = [c for c in seen.seen if c.kind is ChangeKind.PUT]
            assert [c.revision for c in puts] == sorted(c.revision for c in puts)

    run(scenario())


def test_members_register_update_and_drop_out_when_their_lease_expires(store: Store) -> None:
    async def scenario() -> None:
        async with store.opened(2) as (one, two):
            m1 = Member("lb-1", "10.0.0.1:9901", "leader", "healthy", "took the lead")
            m2 = Member("lb-2", "10.0.0.2:9901", "follower", "healthy")
            lease1 = await one.register(m1)
            lease2 = await two.register(m2)
            assert await one.members() == [m1, m2]
            m2_sick = Member("lb-2", "10.0.0.2:9901", "follower", "unhealthy", "no listener")
            lease2 = await two.register(m2_sick, lease2)
            assert await one.members() == [m1, m2_sick]
            # lb-2 stops renewing (it died); lb-1 keeps renewing and outlives it.
            # etcd looks for expired leases every 500 ms; a busy machine may add more.
            while time.monotonic() < lease2.deadline + store.ttl + 3:
                lease1 = await one.renew(lease1)
                if await one.members() == [m1]:
                    break
                await asyncio.sleep(store.ttl / 4)
            assert await two.members() == [m1]
            with pytest.raises(LeaseLost) as lost:
                await two.register(m2, lease2)
            assert lost.value.phase == "register"
            # A restarted lb-2 registers afresh and replaces nothing but itself.
            await two.register(m2)
            assert await one.members() == [m1, m2]

    run(scenario())


def test_an_unreachable_store_is_coordinator_unavailable(store: Store, tmp_path: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(CoordinatorUnavailable) as caught:
            if store.kind == "local":
                blocker = tmp_path / "not-a-dir"
                blocker.write_text("")
                await LocalCoordinator.open(blocker / "cluster.db", store.ttl)
            else:
                await EtcdCoordinator.open([f"http://127.0.0.1:{free_port()}"], "/x", store.ttl)
        assert caught.value.phase == "open"
        assert ("not-a-dir" if store.kind == "local" else "no etcd endpoint") in str(caught.value)

    run(scenario())


# -- several processes ---------------------------------------------------------------------


def worker(harness: Harness, store: Store, label: str, *args: str) -> Process:
    argv = [sys.executable, "-m", "tests.support.coordinator_worker", json.dumps(store.spec),
            *args]
    return harness.spawn(label, argv, ready_prefix='{"ready"')


def records(process: Process) -> list[dict[str, Any]]:
    lines = "".join(process.extra_stdout).splitlines()
    complete = lines if "".join(process.extra_stdout).endswith("\n") else lines[:-1]
    return [json.loads(line) for line in complete if line.strip()]


def test_a_killed_holder_in_another_process_is_replaced_after_its_lease(
    store: Store, harness: Harness
) -> None:
    holder = worker(harness, store, "holder", "hold", "leader", "lb-1")
    wait_until(lambda: any("acquired" in r for r in records(holder)), 15, message="acquired")
    wait_until(lambda: sum("renewed_at" in r for r in records(holder)) >= 2, 15,
               message="two renewals")

    async def scenario() -> None:
        async with store.opened() as (c,):
            assert await c.acquire("leader", "lb-2") is None  # held by the other process
            holder.kill()
            lease = await acquire_when_free(c, "leader", "lb-2")
            acquired_at = time.monotonic()
            # Read after the wait, when the killed holder's output has surely been drained.
            # A renewal it sent but never reported would make the true deadline later and
            # the figure below larger, never smaller.
            deadline = max(r["renewed_at"] for r in records(holder)) + store.ttl
            assert acquired_at >= deadline, (acquired_at, deadline)
            first = next(r["acquired"] for r in records(holder) if "acquired" in r)
            assert lease.token > first
            report(store, "a watching node acquired after the killed holder's deadline",
                   acquired_at - deadline)
            assert acquired_at - deadline < (1.0 if store.kind == "local" else 2.0)

    run(scenario())


def test_processes_contending_for_one_key_never_overlap(store: Store, harness: Harness) -> None:
    rounds = 8
    workers = [worker(harness, store, f"contender-{i}", "contend", "lock", f"lb-{i}",
                      str(rounds)) for i in range(3)]
    for process in workers:
        wait_until(lambda p=process: len(records(p)) >= rounds, 60,  # type: ignore[misc]
                   message=f"{process.label} to finish its rounds")
    terms = sorted((r for p in workers for r in records(p)), key=lambda r: r["start"])
    assert len(terms) == 3 * rounds
    for before, after in itertools.pairwise(terms):
        assert before["end"] < after["start"], (before, after)  # one holder at a time
        assert before["token"] < after["token"], (before, after)  # tokens grow with time


def test_compare_and_set_from_processes_loses_no_update(store: Store, harness: Harness) -> None:
    count = 15
    workers = [worker(harness, store, f"incrementer-{i}", "increment", "counter", str(count))
               for i in range(3)]
    for process in workers:
        wait_until(lambda p=process: len(records(p)) >= 1, 60,  # type: ignore[misc]
                   message=f"{process.label} to finish")

    async def scenario() -> None:
        async with store.opened() as (c,):
            entry = await c.get("counter")
            assert entry is not None and int(entry.value) == 3 * count

    run(scenario())
