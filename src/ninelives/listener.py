"""A listener at run time: its counters and the listening sockets it is served on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ninelives.pool import LatencyHistogram


class ListenerStats:
    """What a listener has seen; shared by every socket it binds."""

    __slots__ = (
        "name", "protocol", "pool_name", "addresses", "connections", "active",
        "requests", "responses", "latency", "rejected",
    )

    def __init__(self, name: str, protocol: str, pool_name: str) -> None:
        self.name = name
        self.protocol = protocol  # "http" | "tcp"
        self.pool_name = pool_name
        self.addresses: list[str] = []  # the real bound addresses (port 0 resolved)
        self.connections = 0  # client connections accepted, ever
        self.active = 0  # client connections open now
        self.requests = 0  # http: requests received; tcp: connections proxied
        # responses[k] counts status class k (1..5) sent to clients; [0] counts requests that
        # ended without a response (client went away, tcp connection failed).
        self.responses = [0, 0, 0, 0, 0, 0]
        self.latency = LatencyHistogram()
        self.rejected = 0  # malformed requests answered 400 (http)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "protocol": self.protocol,
            "pool": self.pool_name,
            "addresses": list(self.addresses),
            "connections": self.connections,
            "active": self.active,
            "requests": self.requests,
            "responses": {f"{k}xx": n for k, n in enumerate(self.responses) if k},
            "no_response": self.responses[0],
            "rejected": self.rejected,
        }


class Binding:
    """One bound listening address. It hands each accepted connection to whichever
    listener owns the address now, so a hot reload re-points it without closing the socket
    (no connection refused, no backlog lost)."""

    __slots__ = ("key", "server", "factory")

    def __init__(self, key: str) -> None:
        self.key = key
        self.server: asyncio.Server | None = None
        self.factory: Callable[[], asyncio.Protocol] | None = None

    def protocol(self) -> asyncio.Protocol:
        if self.factory is None:  # serving starts only once a listener owns the address
            raise RuntimeError(f"connection accepted on {self.key} before it was assigned")
        return self.factory()

    def addresses(self) -> list[str]:
        return bound_addresses(self.server) if self.server is not None else []


def bound_addresses(server: asyncio.Server) -> list[str]:
    """The real bound addresses (a port 0 resolved), as ``host:port`` / ``[v6]:port``."""
    out = []
    for sock in server.sockets:
        host, port = sock.getsockname()[:2]
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return out
