"""The L4 (TCP) proxy: splice each client connection to one server of a pool.

Two :class:`asyncio.Protocol` classes per proxied connection, no streams: :class:`Downstream`
is the client side, :class:`Upstream` the server side. Bytes go through untouched.

- Server choice: ``pool.pick`` keyed on the client IP when the pool balances by
  ``hash`` on ``client_ip``. A failed connect (refused, unreachable, connect timeout) is
  retried on another server (``Pool.fallback``: the rest of the tier, then the next tier),
  as HTTP does: nothing was sent yet, so it is always safe. At most ``retries.attempts``
  + 1 servers are tried; when all fail the client is closed (a client
  that already sent bytes, left unread, may see a reset rather than an EOF).
- Backpressure: when one side's write buffer passes :data:`HIGH_WATER` (``pause_writing``),
  reading from the other side pauses until it drains below :data:`LOW_WATER`. A client that
  does not read therefore holds at most about ``HIGH_WATER`` of the proxy's memory.
- Half-close: EOF from one side becomes ``write_eof`` on the other, and the opposite
  direction keeps flowing until it also ends (or either side is lost).
- Idle timeout: ``timeouts.idle`` without a byte in either direction closes both sides. One
  timer per connection, re-armed at the last activity; data only stamps ``loop.time()``.

Counters. A TCP connection is the unit of a "request": ``stats.requests`` and
``server.requests`` count connections (``server.requests`` once per connect attempt).
There is no status code, so responses are classed as follows: a connection that reached a
server and ended without an error from the server counts as ``responses[2]`` (success), on
the listener and the server; a connection that never reached a server (no server available,
every connect failed, client left while connecting) or that the server broke (reset) counts
as ``responses[0]``. Every failed connect attempt also counts ``server.failures`` and
``server.responses[0]``. No latency is recorded for TCP: a connection's duration is the
client's business, not the server's speed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ninelives.pool import connect_error

if TYPE_CHECKING:
    from ninelives.listener import ListenerStats
    from ninelives.pool import Pool, Server

logger = logging.getLogger("ninelives.tcp")

# Per-direction buffering in the proxy: above HIGH_WATER the producing side stops being read,
# below LOW_WATER it is read again. 256 KiB keeps a fast link busy while bounding memory.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


def tcp_protocol_factory(
    stats: ListenerStats,
    pool: Pool,
    loop: asyncio.AbstractEventLoop,
    connections: set[Downstream] | None = None,
) -> Callable[[], asyncio.Protocol]:
    """The protocol factory for ``loop.create_server`` of a TCP listener proxying to ``pool``.

    ``connections``, when given, holds every open client connection (for a graceful stop).
    """
    hash_on_ip = pool.config.balance == "hash" and pool.hash_kind == "client_ip"
    registry: set[Downstream] = connections if connections is not None else set()

    def factory() -> asyncio.Protocol:
        return Downstream(stats, pool, loop, hash_on_ip, registry)

    return factory


def _shutdown_write(transport: asyncio.Transport) -> None:
    if transport.can_write_eof():
        transport.write_eof()  # sent once the buffered bytes are flushed
    else:
        transport.close()


class Downstream(asyncio.Protocol):
    """The client side of a proxied connection; owns the connection's state and counters."""

    __slots__ = (
        "client_eof", "closed", "connecting", "hash_on_ip", "idle_timer", "last_activity",
        "loop", "pending", "pool", "server", "server_eof", "stats", "transport", "upstream",
        "upstream_failed", "registry",
    )

    def __init__(
        self,
        stats: ListenerStats,
        pool: Pool,
        loop: asyncio.AbstractEventLoop,
        hash_on_ip: bool,
        registry: set[Downstream],
    ) -> None:
        self.stats = stats
        self.registry = registry
        self.pool = pool
        self.loop = loop
        self.hash_on_ip = hash_on_ip
        self.transport: asyncio.Transport
        self.upstream: Upstream | None = None  # set once a server connection is made
        self.server: Server | None = None  # the server counted in server.active, if any
        self.pending: list[bytes] = []  # client bytes that arrived before the upstream
        self.connecting: asyncio.Task[None] | None = None
        self.last_activity = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.client_eof = False
        self.server_eof = False
        self.upstream_failed = False
        self.closed = False

    # -- client events ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.registry.add(self)
        stats = self.stats
        stats.connections += 1
        stats.active += 1
        stats.requests += 1
        key: bytes | None = None
        if self.hash_on_ip:
            peer = transport.get_extra_info("peername")
            if peer:
                key = str(peer[0]).encode("ascii")
        server = self.pool.pick(key)
        if server is None:
            self.pool.no_server += 1
            self.transport.close()  # counted as responses[0] in connection_lost
            return
        self.transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        # Hold the client's bytes in the kernel until there is somewhere to send them.
        self.transport.pause_reading()
        self.connecting = self.loop.create_task(self._connect(server))

    def data_received(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is None:
            self.pending.append(data)
            return
        self.last_activity = self.loop.time()
        upstream.transport.write(data)

    def eof_received(self) -> bool:
        self.client_eof = True
        upstream = self.upstream
        if upstream is None:
            return True  # forwarded when the upstream connection is made
        if self.server_eof:
            self.close()
        else:
            _shutdown_write(upstream.transport)
        return True  # keep the client connection open: the reply may still be coming

    def pause_writing(self) -> None:
        # The client reads slower than the server sends: stop reading the server.
        upstream = self.upstream
        if upstream is not None and not upstream.transport.is_closing():
            upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None and not self.server_eof and not upstream.transport.is_closing():
            upstream.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.registry.discard(self)
        self.stats.active -= 1
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        upstream = self.upstream
        if upstream is None:
            if self.connecting is not None and not self.connecting.done():
                self.connecting.cancel()
            self._release()
            self.stats.responses[0] += 1
            return
        self.stats.responses[0 if self.upstream_failed else 2] += 1
        upstream.transport.close()  # flushes what the server still has to receive

    # -- the upstream side, called by Upstream and the connect task ---------------------------

    async def _connect(self, server: Server) -> None:
        pool = self.pool
        timeout = pool.config.timeouts.connect
        tried: list[Server] = []
        while True:
            self.server = server
            server.active += 1
            server.requests += 1
            tried.append(server)
            try:
                async with asyncio.timeout(timeout):
                    await self.loop.create_connection(
                        functools.partial(Upstream, self, server), server.host, server.port
                    )
                return
            except (OSError, TimeoutError) as exc:
                if self.upstream is not None:
                    return  # made just before the timeout fired: adopted, it is not retried
                server.failures += 1
                server.responses[0] += 1
                self._release()
                reason = connect_error(exc)
                pool.record_failure(server, self.loop.time(), f"connect: {reason}")
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "pool %s server %s: connect failed: %r", pool.name, server.name, exc
                    )
            if self.closed or len(tried) >= pool.max_tries:
                break
            # The same fallback as HTTP: the rest of the tier, then the next tier.
            following = pool.fallback(tried)
            if following is None:
                break
            server = following
        self.transport.close()

    def adopt(self, upstream: Upstream) -> None:
        """The server connection is made: start relaying."""
        if self.closed:
            upstream.transport.close()  # the client left while we were connecting
            return
        self.upstream = upstream
        self.last_activity = self.loop.time()
        transport = upstream.transport
        for chunk in self.pending:
            transport.write(chunk)
        self.pending.clear()
        if self.client_eof:
            _shutdown_write(transport)
        elif transport.get_write_buffer_size() <= HIGH_WATER:
            self.transport.resume_reading()
        if self.pool.config.timeouts.idle:
            self.idle_timer = self.loop.call_at(
                self.last_activity + self.pool.config.timeouts.idle, self._check_idle
            )

    def upstream_eof(self) -> None:
        self.server_eof = True
        if self.client_eof:
            self.close()
        else:
            _shutdown_write(self.transport)

    def upstream_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.upstream_failed = True
        self._release()
        self.transport.close()  # flushes what the client still has to receive

    def close(self) -> None:
        """Close both sides; buffered bytes are flushed first."""
        self.transport.close()
        if self.upstream is not None:
            self.upstream.transport.close()

    def _release(self) -> None:
        server = self.server
        if server is not None:
            server.active -= 1
            self.server = None

    def _check_idle(self) -> None:
        idle = self.pool.config.timeouts.idle
        deadline = self.last_activity + idle
        if self.loop.time() >= deadline:
            self.idle_timer = None
            self.close()
        else:
            self.idle_timer = self.loop.call_at(deadline, self._check_idle)


class Upstream(asyncio.Protocol):
    """The server side of a proxied connection; relays to its :class:`Downstream`."""

    __slots__ = ("downstream", "server", "transport")

    def __init__(self, downstream: Downstream, server: Server) -> None:
        self.downstream = downstream
        self.server = server
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        self.downstream.adopt(self)

    def data_received(self, data: bytes) -> None:
        downstream = self.downstream
        downstream.last_activity = downstream.loop.time()
        downstream.transport.write(data)

    def eof_received(self) -> bool:
        self.downstream.upstream_eof()
        return True

    def pause_writing(self) -> None:
        # The server reads slower than the client sends: stop reading the client.
        transport = self.downstream.transport
        if not transport.is_closing():
            transport.pause_reading()

    def resume_writing(self) -> None:
        downstream = self.downstream
        if not downstream.client_eof and not downstream.transport.is_closing():
            downstream.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        downstream = self.downstream
        if downstream.upstream is not self:
            return  # never adopted: the client had already gone
        server = self.server
        if exc is None:
            server.responses[2] += 1
        else:
            server.failures += 1
            server.responses[0] += 1
        downstream.upstream_lost(exc)
