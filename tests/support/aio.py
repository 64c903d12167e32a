"""Waiting on a condition with a deadline inside an event loop (never a fixed sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

POLL_INTERVAL = 0.005  # how often the condition is re-checked


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Return once ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL)
