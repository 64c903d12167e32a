"""The client side of the HTTP proxy: parse requests, pick a server, relay, answer errors.

One ``Downstream`` per client connection. httptools parses; each request becomes an
``Exchange``; exchanges are answered strictly in order (pipelining), one at a time.
Reading from the client is paused while the server cannot take more (backpressure), while
a pipelined request waits, and while a server connection is being opened with body
bytes piling up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httptools

from ninelives.http.exchange import Exchange, cookie_value
from ninelives.http.messages import CRLF, HOP_BY_HOP, LAST_CHUNK, chunk, error_response
from ninelives.http.upstream import PAUSE_UPSTREAM_FULL, Upstream
from ninelives.listener import ListenerStats
from ninelives.pool import Pool, Server

# Reasons to pause reading from the client, as bits (several may hold at once).
PAUSE_PIPELINE = 1  # a later pipelined request waits for the current one
PAUSE_BUFFERED = 4  # body bytes wait for a server connection that is being opened
PAUSE_UPGRADE = 8  # tunnel bytes wait for the server's 101

BUFFER_LIMIT = 256 * 1024  # body bytes kept while no server connection is ready
WRITE_HIGH_WATER = 256 * 1024
MAX_ATTEMPTS = 3  # servers one request may be sent to (connect failures, resets)


# Headers the parser callback must look at; every other header is forwarded untouched.
INTERESTING = HOP_BY_HOP | {b"host", b"x-forwarded-for", b"cookie", b"content-length"}
INTERESTING_LENGTHS = frozenset(len(name) for name in INTERESTING)


@dataclass(frozen=True, slots=True)
class Route:
    """``routes[i]`` of a listener: host and/or path prefix -> pool."""

    host: bytes | None
    path_prefix: bytes | None
    pool: Pool


@dataclass(slots=True)
class HttpContext:
    """What every client connection of one HTTP listener shares."""

    loop: asyncio.AbstractEventLoop
    stats: ListenerStats
    pool: Pool
    routes: tuple[Route, ...] = ()
    connections: set[Downstream] = field(default_factory=set)
    proto: bytes = b"http"

    def route(self, host: bytes, url: bytes) -> Pool:
        for route in self.routes:
            if route.host is not None and host.split(b":", 1)[0].lower() != route.host:
                continue
            if route.path_prefix is not None and not url.startswith(route.path_prefix):
                continue
            return route.pool
        return self.pool


class Downstream(asyncio.Protocol):
    __slots__ = (
        "ctx", "loop", "stats", "transport", "parser", "client_ip", "xff_line", "receiving",
        "current", "pending", "paused", "closed", "closing", "tunnel", "upgrade_buffer",
        "last_active",
    )

    def __init__(self, ctx: HttpContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.stats = ctx.stats
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = b""
        self.xff_line = b""
        self.receiving: Exchange | None = None  # the request being parsed
        self.current: Exchange | None = None  # the request being answered
        # Pipelined requests waiting their turn (rare and few: a list, not a 760-byte deque).
        self.pending: list[Exchange] = []
        self.paused = 0
        self.closed = False
        self.closing = False  # answer the current request, then close (shutdown, errors)
        self.tunnel: Upstream | None = None
        self.upgrade_buffer: list[bytes] | None = None
        self.last_active = 0.0

    # -- connection events -----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0].encode() if peer else b""
        self.xff_line = b"X-Forwarded-Proto: %b\r\n" % self.ctx.proto
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.stats.connections += 1
        self.stats.active += 1
        self.ctx.connections.add(self)
        self.last_active = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.stats.active -= 1
        self.ctx.connections.discard(self)
        if self.tunnel is not None:
            self.tunnel.transport.close()
            self.tunnel = None
        ex = self.current
        self.current = None
        self.pending.clear()
        if ex is not None and not ex.finished:
            ex.finished = True
            if not ex.responded:
                self.stats.responses[0] += 1
            self._clear_deadline(ex)
            upstream = ex.upstream
            if upstream is not None:
                # The response was not (fully) read: that connection can never be reused.
                upstream.abandon()
            if ex.server is not None:
                ex.server.active -= 1

    def eof_received(self) -> bool:
        # A client may half-close after its request and still wait for the answer.
        if self.tunnel is not None:
            if self.tunnel.transport.can_write_eof():
                self.tunnel.transport.write_eof()
            return True
        if self.current is not None:
            self.closing = True
            return True
        return False

    def pause_writing(self) -> None:
        # The client does not read fast enough: stop reading from its server.
        upstream = self.tunnel if self.tunnel is not None else (
            self.current.upstream if self.current is not None else None
        )
        if upstream is not None:
            upstream.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.tunnel if self.tunnel is not None else (
            self.current.upstream if self.current is not None else None
        )
        if upstream is not None:
            upstream.resume_reading()

    def pause(self, reason: int) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        if self.upgrade_buffer is not None:
            self.upgrade_buffer.append(data)
            self.pause(PAUSE_UPGRADE)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0]
            self.upgrade_buffer = [data[offset:]] if offset < len(data) else []
        except httptools.HttpParserError as exc:
            self.reject(exc)

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.receiving = Exchange()

    def on_url(self, url: bytes) -> None:
        ex = self.receiving
        assert ex is not None
        ex.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.receiving
        assert ex is not None
        lname = name.lower() if len(name) in INTERESTING_LENGTHS else b""
        if lname in INTERESTING:
            if lname == b"host":
                ex.host = value
            elif lname == b"cookie":
                ex.cookie = value if ex.cookie is None else ex.cookie + b"; " + value
            elif lname == b"content-length":
                ex.content_length = value
            elif lname == b"x-forwarded-for":
                ex.xff = value if ex.xff is None else ex.xff + b", " + value
                return
            elif lname == b"connection":
                ex.connection = value if ex.connection is None else ex.connection + b"," + value
                return
            elif lname == b"upgrade":
                ex.upgrade = value
                return
            elif lname == b"transfer-encoding":
                ex.chunked = True  # llhttp rejects any other final coding with a body
                return
            else:
                return
        ex.headers.append(b"".join((name, b": ", value, b"\r\n")))

    def on_headers_complete(self) -> None:
        ex = self.receiving
        assert ex is not None
        parser = self.parser
        ex.method = parser.get_method()
        ex.is_head = ex.method == b"HEAD"
        ex.http11 = parser.get_http_version() == "1.1"
        ex.keep_alive = parser.should_keep_alive() and not self.closing
        ex.expects_body = ex.chunked or (ex.content_length not in (b"", b"0"))
        if ex.connection is not None:
            self._drop_connection_named(ex)
        if ex.upgrade is not None and not parser.should_upgrade():
            ex.upgrade = None  # Upgrade without "Connection: upgrade" asks for nothing
        if self.current is None:
            self.current = ex
            self.start(ex)
        else:
            self.pending.append(ex)
            self.pause(PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        ex = self.receiving
        assert ex is not None
        data = chunk(body) if ex.chunked else body
        self._send_body(ex, data)

    def on_message_complete(self) -> None:
        ex = self.receiving
        assert ex is not None
        self.receiving = None
        ex.complete = True
        if ex.chunked:
            self._send_body(ex, LAST_CHUNK)

    def _send_body(self, ex: Exchange, data: bytes) -> None:
        upstream = ex.upstream
        if upstream is not None and ex is self.current and not ex.finished:
            upstream.transport.write(data)
        elif not ex.finished:
            ex.body.append(data)
            ex.body_size += len(data)
            if ex.body_size > BUFFER_LIMIT:
                self.pause(PAUSE_BUFFERED)

    def _drop_connection_named(self, ex: Exchange) -> None:
        """Drop headers that the Connection header names: they are hop-by-hop too."""
        assert ex.connection is not None
        named = {t.strip().lower() for t in ex.connection.split(b",")}
        named -= {b"close", b"keep-alive", b"upgrade", b""}
        if named:
            ex.headers = [
                line for line in ex.headers
                if line.split(b":", 1)[0].strip().lower() not in named
            ]

    # -- answering -------------------------------------------------------------------------

    def start(self, ex: Exchange) -> None:
        """Begin answering ``ex``: choose a pool and a server and send the request."""
        self.stats.requests += 1
        ex.started = self.loop.time()
        pool = self.ctx.route(ex.host, ex.url) if self.ctx.routes else self.ctx.pool
        ex.pool = pool
        server = self.choose(pool, ex)
        if server is None:
            pool.no_server += 1
            self.respond_error(ex, 503, f'no server available in pool "{pool.name}"')
            return
        self.assign(ex, server)

    def choose(self, pool: Pool, ex: Exchange) -> Server | None:
        if pool.sticky_cookie is not None:
            pinned_name = (
                cookie_value(ex.cookie, pool.sticky_cookie) if ex.cookie is not None else None
            )
            if pinned_name is not None:
                pinned = pool.pinned(pinned_name)
                if pinned is not None:
                    return pinned
            ex.set_cookie = True
        key: bytes | None = None
        if pool.keyed:
            kind = pool.hash_kind
            if kind == "client_ip":
                key = self.client_ip
            elif kind == "header":
                key = ex.header_value(pool.hash_name)
            elif ex.cookie is not None:
                key = cookie_value(ex.cookie, pool.hash_name)
        return pool.pick(key)

    def assign(self, ex: Exchange, server: Server) -> None:
        ex.server = server
        server.active += 1
        server.requests += 1
        idle = server.idle
        while idle:
            upstream: Upstream = idle.pop()
            if upstream.usable():
                self.send_request(ex, upstream)
                return
        self.loop.create_task(self.connect(ex, server))

    def request_head(self, ex: Exchange) -> bytes:
        parts = [ex.method, b" ", ex.url, b" HTTP/1.1\r\n"]
        parts.extend(ex.headers)
        if ex.upgrade is not None:
            parts.append(b"Connection: upgrade\r\nUpgrade: %b\r\n" % ex.upgrade)
        elif ex.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if ex.xff is None:
            parts.append(b"X-Forwarded-For: %b\r\n" % self.client_ip)
        else:
            parts.append(b"X-Forwarded-For: %b, %b\r\n" % (ex.xff, self.client_ip))
        parts.append(self.xff_line)
        parts.append(CRLF)
        return b"".join(parts)

    def send_request(self, ex: Exchange, upstream: Upstream) -> None:
        upstream.attach(ex, self)
        head = self.request_head(ex)
        if ex.body:
            head += b"".join(ex.body)
            ex.body.clear()
            ex.body_size = 0
            self.resume(PAUSE_BUFFERED)
        upstream.transport.write(head)

    async def connect(self, ex: Exchange, server: Server) -> None:
        pool = ex.pool
        assert pool is not None
        timeouts = pool.config.timeouts
        try:
            _, upstream = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: Upstream(server, self.loop), server.host, server.port
                ),
                timeouts.connect,
            )
        except (OSError, TimeoutError) as exc:
            server.failures += 1
            server.responses[0] += 1
            if ex.finished or self.closed:
                return
            server.active -= 1
            ex.server = None
            reason = "timed out" if isinstance(exc, TimeoutError) else (
                exc.strerror.lower() if exc.strerror else type(exc).__name__
            )
            self.fail_over(
                ex, server, f"cannot connect to server {server.name} ({server.address}): {reason}"
            )
            return
        if ex.finished or self.closed or ex is not self.current:
            server.idle.append(upstream)  # a fresh connection nobody used: keep it
            return
        self.send_request(ex, upstream)

    def retry_fresh(self, ex: Exchange, server: Server) -> None:
        """Resend ``ex`` to ``server`` on a new connection (its reused one was stale)."""
        self._clear_deadline(ex)
        ex.upstream = None
        self.loop.create_task(self.connect(ex, server))

    def fail_over(self, ex: Exchange, server: Server, detail: str) -> None:
        """``server`` could not answer and nothing reached the client: try another one.

        Only called when resending is safe: nothing was sent (connect failure), or the
        request is idempotent, has no body, and no byte of a response came back.
        """
        self._clear_deadline(ex)
        if ex.tried is None:
            ex.tried = []
        ex.tried.append(server)
        pool = ex.pool
        assert pool is not None
        if len(ex.tried) < MAX_ATTEMPTS:
            other = pool.fallback(ex.tried)
            if other is not None:
                self.assign(ex, other)
                return
        self.respond_error(ex, 502, detail)

    def on_response_timeout(self, ex: Exchange) -> None:
        self._clear_deadline(ex)
        if ex.finished or ex.responded:
            return
        server = ex.server
        assert server is not None and ex.pool is not None
        server.failures += 1
        server.responses[0] += 1
        if ex.upstream is not None:
            ex.upstream.abandon()
        timeout = ex.pool.config.timeouts.response
        self.respond_error(
            ex, 504, f"server {server.name} did not respond within {timeout:g}s"
        )

    def respond_error(self, ex: Exchange, status: int, detail: str) -> None:
        """Answer ``ex`` with an error of the proxy's own; nothing of a server's was sent."""
        close = not ex.complete or not ex.keep_alive or self.closing
        self.stats.responses[status // 100] += 1
        self.transport.write(error_response(status, detail, close=close))
        ex.responded = True
        if close:
            ex.keep_alive = False
        self.finish(ex)

    def finish(self, ex: Exchange) -> None:
        """``ex`` is answered: account for it, then close or go on with the next request."""
        if ex.finished:
            return
        ex.finished = True
        self._clear_deadline(ex)
        ex.upstream = None
        elapsed = self.loop.time() - ex.started
        self.stats.latency.observe(elapsed)
        if ex.pool is not None:
            ex.pool.latency.observe(elapsed)
        if ex.server is not None:
            ex.server.active -= 1
        self.current = None
        self.resume(PAUSE_UPSTREAM_FULL | PAUSE_BUFFERED)
        if not ex.keep_alive or not ex.complete or self.closing or self.closed:
            self.close()
            return
        if self.pending:
            nxt = self.pending.pop(0)
            if not self.pending:
                self.resume(PAUSE_PIPELINE)
            self.current = nxt
            self.start(nxt)

    def start_tunnel(self, upstream: Upstream) -> None:
        """The server accepted the upgrade (101): relay raw bytes both ways from now on."""
        ex = self.current
        self.tunnel = upstream
        buffered = self.upgrade_buffer or []
        self.upgrade_buffer = None
        if ex is not None:
            self.current = None
            ex.finished = True
            self._clear_deadline(ex)
            if ex.server is not None:
                ex.server.active -= 1
            elapsed = self.loop.time() - ex.started
            self.stats.latency.observe(elapsed)
            if ex.pool is not None:
                ex.pool.latency.observe(elapsed)
        for data in buffered:
            if data:
                upstream.transport.write(data)
        self.resume(PAUSE_UPGRADE | PAUSE_UPSTREAM_FULL | PAUSE_BUFFERED)

    def reject(self, exc: Exception) -> None:
        """A malformed request: the client is at fault; answer 400 and close."""
        self.stats.rejected += 1
        self.stats.responses[4] += 1
        reason = str(exc) or type(exc).__name__
        if self.current is None:
            self.transport.write(error_response(400, f"malformed request: {reason}", close=True))
        # With a request in flight its response comes first; then the connection closes.
        self.closing = True
        self.receiving = None
        if self.current is None:
            self.close()
        else:
            self.pause(PAUSE_PIPELINE)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: idle connections close now, busy ones after their response."""
        self.closing = True
        if self.current is None and self.tunnel is None:
            self.close()
        elif self.current is not None:
            self.current.keep_alive = False

    @staticmethod
    def _clear_deadline(ex: Exchange) -> None:
        if ex.deadline:
            ex.deadline = 0.0
            if ex.pool is not None:
                ex.pool.awaiting.discard(ex)


def expire_responses(pool: Pool, now: float) -> int:
    """Answer 504 for every request of ``pool`` whose response head is overdue.

    Only requests in flight are looked at (a few, not every request ever sent).
    Returns how many timed out.
    """
    overdue = [ex for ex in pool.awaiting if ex.deadline <= now]
    for ex in overdue:
        pool.awaiting.discard(ex)
        upstream = ex.upstream
        if upstream is not None and upstream.down is not None:
            upstream.down.on_response_timeout(ex)
    return len(overdue)
