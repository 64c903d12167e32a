"""What is particular to the etcd coordinator: several endpoints, and losing etcd.

The contract both coordinators share is in test_coordinator_conformance.py; these tests
stop their own etcd, so they start one each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import pytest

from ninelives.cluster.coordinator import Change, CoordinatorUnavailable
from ninelives.cluster.etcd import EtcdCoordinator
from tests.support.etcd import start_etcd
from tests.support.node import Harness, free_port

TTL = 2.0


def run(scenario: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(60):
            await scenario

    asyncio.run(bounded())


def test_an_endpoint_that_refuses_is_skipped(harness: Harness) -> None:
    etcd = start_etcd(harness)
    dead = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        coordinator = await EtcdCoordinator.open([dead, etcd.client_url], "/nl", TTL)
        try:
            lease = await coordinator.acquire("leader", "lb-1")
            assert lease is not None
            assert coordinator.endpoint == etcd.client_url  # remembered for the next call
            async with coordinator.watch("leader"):
                pass  # a watch skips the dead endpoint too
            await coordinator.release(lease)
        finally:
            await coordinator.close()

    run(scenario())


def test_losing_etcd_is_coordinator_unavailable_named_by_phase(harness: Harness) -> None:
    etcd = start_etcd(harness)

    async def scenario() -> None:
        coordinator = await EtcdCoordinator.open([etcd.client_url], "/nl", TTL)
        try:
            lease = await coordinator.acquire("leader", "lb-1")
            assert lease is not None
            async with coordinator.watch("") as watch:
                changes: list[Change] = []

                async def drain() -> None:
                    async for change in watch:
                        changes.append(change)

                task = asyncio.create_task(drain())
                etcd.stop()
                with pytest.raises(CoordinatorUnavailable) as lost_watch:
                    await asyncio.wait_for(task, 10)
                assert lost_watch.value.phase == "watch"
            with pytest.raises(CoordinatorUnavailable) as lost_renew:
                await coordinator.renew(lease)
            assert lost_renew.value.phase == "renew"
            assert str(lost_renew.value).startswith(
                f"renew: no etcd endpoint answered: {etcd.client_url}: "
            )
            with pytest.raises(CoordinatorUnavailable, match=r"^get: "):
                await coordinator.get("leader")
        finally:
            with contextlib.suppress(CoordinatorUnavailable):
                await coordinator.close()

    run(scenario())
