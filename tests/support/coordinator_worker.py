"""A process that uses a coordinator, for tests that need several processes at once.

``python -m tests.support.coordinator_worker SPEC COMMAND ARGS...`` where SPEC is JSON
(``{"kind": "local", "path": ..., "ttl": 1}`` or ``{"kind": "etcd", "endpoints": [...],
"prefix": ..., "ttl": 2}``). Every result is one JSON line on stdout; times are
``time.monotonic()``, which on Linux is the machine-wide CLOCK_MONOTONIC, so the test
process can compare them with its own.

Commands:

- ``hold KEY NAME``: acquire KEY (retrying), print ``{"acquired": token, "renewed_at": t,
  "ttl": s}``, then renew every third of the lease, printing ``{"renewed_at": t}``, until
  killed.
- ``contend KEY NAME ROUNDS``: ROUNDS times: acquire KEY (retrying), note when it was
  acquired, hold it briefly, note when release is called, release; print one
  ``{"token": T, "start": t0, "end": t1}`` per round.
- ``increment KEY COUNT``: add 1 to the integer at KEY, COUNT times, by compare-and-set
  with retries; print ``{"conflicts": n}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from ninelives.cluster.coordinator import Conflict, Coordinator
from ninelives.cluster.etcd import EtcdCoordinator
from ninelives.cluster.local import LocalCoordinator

RETRY = 0.005  # between two attempts to acquire a held key

HOLD = 0.002  # seconds each contender holds the lease


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def open_coordinator(spec: dict[str, Any]) -> Coordinator:
    if spec["kind"] == "local":
        return await LocalCoordinator.open(Path(spec["path"]), float(spec["ttl"]))
    return await EtcdCoordinator.open(spec["endpoints"], spec["prefix"], float(spec["ttl"]))


async def hold(coordinator: Coordinator, key: str, name: str) -> None:
    lease = None
    while lease is None:
        lease = await coordinator.acquire(key, name)
        if lease is None:
            await asyncio.sleep(RETRY)
    emit({"acquired": lease.token, "renewed_at": lease.renewed_at, "ttl": lease.ttl})
    while True:
        await asyncio.sleep(lease.ttl / 3)
        lease = await coordinator.renew(lease)
        emit({"renewed_at": lease.renewed_at})


async def contend(coordinator: Coordinator, key: str, name: str, rounds: int) -> None:
    for _ in range(rounds):
        lease = None
        while lease is None:
            lease = await coordinator.acquire(key, name)
            if lease is None:
                await asyncio.sleep(RETRY)
        start = time.monotonic()
        await asyncio.sleep(HOLD)  # the work done while holding the lease
        end = time.monotonic()
        await coordinator.release(lease)
        emit({"token": lease.token, "start": start, "end": end})


async def increment(coordinator: Coordinator, key: str, count: int) -> None:
    conflicts = 0
    for _ in range(count):
        while True:
            entry = await coordinator.get(key)
            value = int(entry.value) if entry is not None else 0
            try:
                await coordinator.compare_and_set(
                    key, str(value + 1), entry.version if entry is not None else None
                )
                break
            except Conflict:
                conflicts += 1
    emit({"conflicts": conflicts})


async def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    command, args = argv[1], argv[2:]
    coordinator = await open_coordinator(spec)
    emit({"ready": True})
    try:
        if command == "hold":
            await hold(coordinator, args[0], args[1])
        elif command == "contend":
            await contend(coordinator, args[0], args[1], int(args[2]))
        elif command == "increment":
            await increment(coordinator, args[0], int(args[1]))
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        await coordinator.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
