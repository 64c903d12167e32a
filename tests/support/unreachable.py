"""A real ``local`` coordinator that a test cuts off: its reads never answer, as when the
store is out of this node's reach (the caller's deadline turns that into
CoordinatorUnavailable)."""

from __future__ import annotations

import asyncio

from ninelives.cluster.coordinator import Entry
from ninelives.cluster.local import LocalCoordinator

NEVER = 3600.0  # seconds: longer than any test's deadline


class Unanswering(LocalCoordinator):
    async def get(self, key: str) -> Entry | None:
        await asyncio.sleep(NEVER)
        return None
