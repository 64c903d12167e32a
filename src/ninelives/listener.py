"""A listener at run time: its counters and the listening sockets it is served on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, cast

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


def sockets(server: asyncio.Server) -> list[socket.socket]:
    """The server's listening sockets. uvloop gives a list where asyncio's types say a
    tuple: read untyped, or the compiled module (see setup.py) would refuse it."""
    found: Any = cast(Any, server).sockets
    return list(found)


def bound_addresses(server: asyncio.Server) -> list[str]:
    """The real bound addresses (a port 0 resolved), as ``host:port`` / ``[v6]:port``."""
    out = []
    for sock in sockets(server):
        host, port = sock.getsockname()[:2]
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return out


IPV6_TRANSPARENT = 75  # linux/in6.h; Python's socket module does not name it


def answer_from_a_vip_gone(server: asyncio.Server) -> str | None:
    """Let connections accepted on the virtual IP send their answers after this node removed
    the address (it handed the lead over while a request was in flight).

    Without it the kernel refuses to send from an address that is no longer on the host, so
    such a response never leaves and the client waits for its timeout. ``IP_TRANSPARENT``
    (``IPV6_TRANSPARENT``) on the listening socket, which every accepted socket inherits,
    lets it send from any address; it changes nothing for what the socket accepts. It needs
    CAP_NET_ADMIN, as adding the VIP does. Returns why it could not be set, else None.
    """
    for sock in sockets(server):
        level, option = ((socket.IPPROTO_IPV6, IPV6_TRANSPARENT) if sock.family == socket.AF_INET6
                         else (socket.SOL_IP, socket.IP_TRANSPARENT))
        try:
            sock.setsockopt(level, option, 1)
        except OSError as exc:
            return f"IP_TRANSPARENT on {bound_addresses(server)[0]}: {exc.strerror or exc}"
    return None
