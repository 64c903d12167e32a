"""What every client connection of one HTTP listener shares, and its routing rules."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ninelives.http.heads import header_value, request_target
from ninelives.listener import ListenerStats
from ninelives.pool import Pool

if TYPE_CHECKING:
    from ninelives.http.downstream import Downstream


@dataclass(frozen=True, slots=True)
class Route:
    """``routes[i]`` of a listener: host and/or path prefix -> pool."""

    host: bytes | None
    path_prefix: bytes | None
    pool: Pool


@dataclass(slots=True, eq=False)
class HttpContext:
    """What every client connection of one HTTP listener shares (one per listener: equal
    only to itself)."""

    loop: asyncio.AbstractEventLoop
    stats: ListenerStats
    pool: Pool
    routes: tuple[Route, ...] = ()
    connections: set[Downstream] = field(default_factory=set)
    proto: bytes = b"http"

    def route(self, head: bytes) -> Pool:
        host = (header_value(head, b"host") or b"").split(b":", 1)[0].lower()
        target = request_target(head)
        for route in self.routes:
            if route.host is not None and host != route.host:
                continue
            if route.path_prefix is not None and not target.startswith(route.path_prefix):
                continue
            return route.pool
        return self.pool
