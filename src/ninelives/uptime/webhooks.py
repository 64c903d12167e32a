"""Webhooks: a JSON POST to every ``uptime.webhooks`` URL when an SLO alert fires or
resolves and when an incident starts or ends.

Nothing here is on the data plane, and nothing waits for a receiver: :meth:`Webhooks.send`
puts the payload on a bounded queue per URL (a few hundred nanoseconds) and returns. One
task per URL delivers in order, retrying a refused or failed delivery with exponential
backoff (:data:`FIRST_RETRY` doubling up to :data:`MAX_RETRY`, :data:`ATTEMPTS` attempts in
all: about ten minutes), so a receiver that is down for a deploy still gets every message.
A queue that is full (a receiver down for long while alerts keep coming) drops the newest
message and counts it in :attr:`Webhooks.dropped`: memory stays bounded.

A delivery is done when the receiver answers 2xx; any other status, a timeout or a
connection error is retried (Alertmanager's webhook receiver does the same).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("ninelives.uptime.webhooks")

QUEUE_SIZE = 1000  # messages waiting per URL
ATTEMPTS = 12
FIRST_RETRY = 1.0  # seconds before the second attempt; doubled each time
MAX_RETRY = 120.0
TIMEOUT = 10.0  # seconds for one delivery, connect to answer


@dataclass(slots=True)
class _Target:
    url: str
    queue: asyncio.Queue[dict[str, Any]]
    task: asyncio.Task[None] | None = None
    delivered: int = 0
    failures: int = 0  # attempts that failed (a message retried twice counts 2)
    last_error: str = ""


@dataclass(slots=True)
class Webhooks:
    """The webhooks of one node. ``urls`` is read at every :meth:`send` (a reload may
    change it)."""

    urls: Callable[[], Sequence[str]]
    first_retry: float = FIRST_RETRY
    max_retry: float = MAX_RETRY
    attempts: int = ATTEMPTS
    dropped: int = 0
    closed: bool = False
    targets: dict[str, _Target] = field(default_factory=dict)
    _client: httpx.AsyncClient | None = None

    def send(self, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for every URL; never waits. Call on the event loop."""
        if self.closed:
            return
        for url in self.urls():
            target = self.targets.get(url)
            if target is None:
                target = self.targets[url] = _Target(url, asyncio.Queue(QUEUE_SIZE))
            if target.task is None or target.task.done():
                target.task = asyncio.get_running_loop().create_task(self._deliver(target))
            try:
                target.queue.put_nowait(payload)
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("webhook %s: %d messages waiting; dropped a %s message", url,
                            QUEUE_SIZE, payload.get("type", ""))

    async def close(self) -> None:
        """Stop delivering (what is still queued is lost with the process anyway)."""
        self.closed = True
        for target in self.targets.values():
            if target.task is not None:
                target.task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def status(self) -> list[dict[str, Any]]:
        return [
            {"url": t.url, "waiting": t.queue.qsize(), "delivered": t.delivered,
             "failed_attempts": t.failures, "last_error": t.last_error or None}
            for t in self.targets.values()
        ]

    async def _deliver(self, target: _Target) -> None:
        while True:
            payload = await target.queue.get()
            body = json.dumps(payload).encode()
            delay = self.first_retry
            for attempt in range(1, self.attempts + 1):
                problem = await self._post(target.url, body)
                if not problem:
                    target.delivered += 1
                    break
                target.failures += 1
                target.last_error = problem
                if attempt == self.attempts:
                    log.error("webhook %s: gave up a %s message after %d attempts: %s",
                              target.url, payload.get("type", ""), attempt, problem)
                    break
                log.warning("webhook %s: attempt %d failed (%s); again in %.1fs",
                            target.url, attempt, problem, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry)

    async def _post(self, url: str, body: bytes) -> str:
        """``""`` when delivered, else what went wrong."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT)
        try:
            response = await self._client.post(
                url, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= response.status_code < 300:
            return ""
        return f"answered {response.status_code}"
