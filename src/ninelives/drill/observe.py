"""What the proxy sent to each server, read from the proxy while the drill runs.

A killed server answers nothing, so the clients cannot tell when the proxy stopped
sending to it (every try that hit it was retried elsewhere). The proxy can: it counts the
requests it sent to each server. The drill reads that count every ``POLL_INTERVAL``; the
time of the last increase after the fault is when the server stopped receiving requests
(within one poll). :class:`ServerCounters` is the one method a proxy needs; ninelives
answers it from ``GET /v1/status`` (``requests`` per server: every try, failed or not),
the failover benchmark from HAProxy's stats socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ninelives.client import AdminClient, AdminError
from ninelives.drill.load import clock

POLL_INTERVAL = 0.025  # seconds between two reads of the proxy's counters


class ServerCounters(Protocol):
    """A proxy's count of the requests it has sent to each server of one pool."""

    async def read(self) -> Mapping[str, int]:
        """Requests sent so far, by server name (tries that failed included); raises
        OSError or ValueError when the proxy cannot say."""


@dataclass(frozen=True, slots=True)
class CounterReading:
    at: float  # when the answer came (load.clock)
    count: int


class NinelivesCounters:
    """Per-server ``requests`` of one pool from a node's ``GET /v1/status``."""

    def __init__(self, admin: str, pool: str) -> None:
        self.client = AdminClient(admin, None, timeout=2.0)
        self.pool = pool

    async def read(self) -> Mapping[str, int]:
        status = await asyncio.to_thread(self.client.status)
        for pool in status.get("pools", []):
            if pool.get("name") == self.pool:
                return {
                    server["name"]: int(server["requests"])
                    for tier in pool["tiers"]
                    for server in tier["servers"]
                }
        raise AdminError(f'the node has no pool "{self.pool}"')


class CounterWatch:
    """Reads one server's counter every ``interval`` until stopped."""

    def __init__(self, source: ServerCounters, server: str, interval: float = POLL_INTERVAL):
        self.source = source
        self.server = server
        self.interval = interval
        self.readings: list[CounterReading] = []
        self.errors = 0
        self.stop = asyncio.Event()

    async def run(self) -> list[CounterReading]:
        while not self.stop.is_set():
            try:
                counts = await self.source.read()
            except (AdminError, OSError, ValueError):
                self.errors += 1  # a busy proxy may miss a poll; the next one counts
            else:
                if self.server in counts:
                    self.readings.append(CounterReading(clock(), counts[self.server]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.interval)
        return self.readings
