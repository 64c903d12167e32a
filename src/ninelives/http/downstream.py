"""The client side of the HTTP proxy: receive requests, pick a server, relay, answer errors.

One ``Downstream`` per client connection. httptools (llhttp) parses every byte; each
request becomes an ``Exchange``; exchanges are answered strictly in order (pipelining),
one at a time.

The hot path is built for few Python calls per request. llhttp reports only the end of
a head and of a message to Python; body bytes go into a list through a C-level callback;
the request head is taken as raw bytes from the socket data (llhttp has validated it) and
forwarded as it came plus ``X-Forwarded-For``/``X-Forwarded-Proto``, unless it carries
something the proxy must remove or merge (hop-by-hop fields, an earlier X-Forwarded-For,
HTTP/1.0), in which case it is rewritten.

To take heads from the raw bytes, the connection tracks where the next message starts
(``sync``, an offset in the byte stream): right after a head without a body, or
Content-Length bytes after it. After a chunked body that position is not known until the
client's next read starts clean; a request pipelined behind a chunked one in the same read
is not answered and the connection is closed after the chunked one's response, which
RFC 9112 section 9.3.2 lets a server do (clients retry such requests).

Reading from the client is paused while the server cannot take more (backpressure), while
a pipelined request waits, and while a server connection is being opened with body bytes
piling up.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from functools import partial
from typing import Any

import httptools

from ninelives.http.context import HttpContext
from ninelives.http.exchange import Exchange, cookie_value
from ninelives.http.heads import (
    PLAIN_REQUEST,
    all_values,
    header_value,
    rewrite_request,
    scan_request,
)
from ninelives.http.messages import LAST_CHUNK, error_response, framed
from ninelives.http.retry import keep_body, replay, retry_target
from ninelives.http.upstream import PAUSE_UPSTREAM_FULL, Upstream
from ninelives.pool import LATENCY_BUCKETS, Pool, Server, connect_error

# Reasons to pause reading from the client, as bits (several may hold at once).
PAUSE_PIPELINE = 1  # a later pipelined request waits for the current one
PAUSE_BUFFERED = 4  # body bytes wait for a server connection that is being opened
PAUSE_UPGRADE = 8  # tunnel bytes wait for the server's 101

BUFFER_LIMIT = 256 * 1024  # body bytes kept while no server connection is ready
WRITE_HIGH_WATER = 256 * 1024
MAX_HEAD = 64 * 1024  # a request head larger than this is refused (431)
CRLF_BYTES = frozenset(b"\r\n")


class Downstream(asyncio.Protocol):
    __slots__ = (
        "ctx", "loop", "stats", "transport", "parser", "client_ip", "forwarded",
        "pos", "ref", "ref_pos", "sync", "head_end", "partial", "receiving", "body_parts",
        "on_body", "begun", "on_message_begin", "current", "pending", "paused", "closed",
        "closing", "tunnel", "upgrade_buffer", "swept_pos", "quiet_since", "seen_head",
        "seen_fields", "seen_method", "seen_http11", "seen_keep_alive",
    )

    def __init__(self, ctx: HttpContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.stats = ctx.stats
        self.transport: Any = None
        self.client_ip = b""
        self.forwarded = b""  # the X-Forwarded-* lines this client's requests get
        # Where heads are in the byte stream: ``pos`` is the offset of the end of what was
        # read; ``ref`` holds the bytes being parsed, starting at offset ``ref_pos``;
        # ``sync`` is where the next message starts (-1: unknown, after a chunked body);
        # ``partial`` the start of a head that is not complete yet.
        self.pos = 0
        self.ref = b""
        self.ref_pos = 0
        self.sync = 0
        self.head_end = 0
        self.partial: bytes | None = None
        self.receiving: Exchange | None = None  # the request whose body is being read
        # llhttp calls these from C, no Python frame: body bytes are collected in a list,
        # and every message start leaves a mark (cleared once its head is complete).
        self.body_parts: list[bytes] = []
        self.on_body = self.body_parts.append
        self.begun: list[None] = []
        self.on_message_begin = partial(self.begun.append, None)
        self.parser = httptools.HttpRequestParser(self)
        self.current: Exchange | None = None  # the request being answered
        # Pipelined requests waiting their turn (rare and few: a list, not a deque).
        self.pending: list[Exchange] = []
        self.paused = 0
        self.closed = False
        self.closing = False  # answer the current request, then close (shutdown, errors)
        self.tunnel: Upstream | None = None
        self.upgrade_buffer: list[bytes] | None = None
        # Bytes read (``pos``) as the idle sweep last saw them, and since when unchanged:
        # idleness is found by the sweep without a clock read per socket read.
        self.swept_pos = 0
        self.quiet_since = 0.0
        # The last request head scanned and what the scan and llhttp found (all of it
        # follows from the head's bytes): clients repeat their heads often, and comparing
        # bytes costs a fraction of scanning them and of asking llhttp.
        self.seen_head = b""
        self.seen_fields = PLAIN_REQUEST
        self.seen_method = b""
        self.seen_http11 = True
        self.seen_keep_alive = True

    # -- connection events -----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0].encode() if peer else b""
        self.forwarded = b"X-Forwarded-For: %b\r\nX-Forwarded-Proto: %b\r\n\r\n" % (
            self.client_ip, self.ctx.proto,
        )
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.stats.connections += 1
        self.stats.active += 1
        self.ctx.connections.add(self)
        self.quiet_since = self.loop.time()

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
            ex.deadline = 0.0
            upstream = ex.upstream
            if upstream is not None:
                # The response was not (fully) read: that connection can never be reused.
                upstream.abandon()
            if ex.server is not None:
                ex.server.active -= 1
            if ex.tried is not None and ex.pool is not None:
                ex.pool.retrying -= 1
                ex.pool.retry_outcomes["failed"] += 1

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

    def _upstream(self) -> Upstream | None:
        if self.tunnel is not None:
            return self.tunnel
        return self.current.upstream if self.current is not None else None

    def pause_writing(self) -> None:
        # The client does not read fast enough: stop reading from its server.
        upstream = self._upstream()
        if upstream is not None:
            upstream.pause_reading()

    def resume_writing(self) -> None:
        upstream = self._upstream()
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

    # -- reading requests ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        if self.upgrade_buffer is not None:
            self.upgrade_buffer.append(data)
            self.pause(PAUSE_UPGRADE)
            return
        head_start = self.partial
        if head_start is None:
            self.ref = data
            self.ref_pos = self.pos
            if self.sync < 0 and self.receiving is None and not self.begun:
                self.sync = self.pos  # between messages: the next one starts here
        else:
            self.partial = None
            self.ref = head_start + data
            self.ref_pos = self.pos - len(head_start)
        self.pos += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0]
            self.upgrade_buffer = [data[offset:]] if offset < len(data) else []
            return
        except httptools.HttpParserError as exc:
            self.reject(400, f"malformed request: {exc or type(exc).__name__}")
            return
        if self.body_parts:
            self._take_body(self.receiving)
        if self.receiving is None and 0 <= self.sync < self.pos:
            # The start of the next head is here but not its end: keep it for the next read.
            rest = self.ref[self.sync - self.ref_pos :]
            if len(rest) > MAX_HEAD:
                self.reject(431, f"request head larger than {MAX_HEAD} bytes")
                return
            self.partial = rest
        self.ref = b""

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.begun.clear()
        if self.sync < 0:
            # Pipelined behind a chunked request in the same read: its start is unknown.
            # Leave it unanswered and close after the current response (RFC 9112 9.3.2).
            self.closing = True
            self.receiving = None
            if self.current is None:
                self.close()
            return
        ref = self.ref
        start = self.sync - self.ref_pos
        while ref[start] in CRLF_BYTES:
            start += 1  # empty lines before a request line are ignored (RFC 9112 2.2)
        end = ref.index(b"\r\n\r\n", start) + 4
        if end - start > MAX_HEAD:
            self.reject(431, f"request head larger than {MAX_HEAD} bytes")
            return
        self.head_end = self.ref_pos + end
        head = ref[start:end]
        if head != self.seen_head:
            self.seen_fields = scan_request(head)
            self.seen_method = parser.get_method()
            line_end = head.index(b"\r\n")
            self.seen_http11 = head[line_end - 3 : line_end] == b"1.1"
            self.seen_keep_alive = parser.should_keep_alive()
            self.seen_head = head
        fields = self.seen_fields
        now = self.loop.time()
        ex = Exchange(
            head, fields, self.seen_method, self.seen_http11,
            self.seen_keep_alive and not self.closing, now,
        )
        if fields.upgrade is not None and parser.should_upgrade():
            ex.upgrade = True
            ex.complete = False  # what follows the head belongs to the tunnel
            ex.keep_alive = False  # after a refused upgrade the connection cannot go on
        self.receiving = ex
        if self.current is None:
            self.current = ex
            self.dispatch(ex, None, now)
        else:
            self.pending.append(ex)
            self.pause(PAUSE_PIPELINE)

    def on_message_complete(self) -> None:
        ex = self.receiving
        if ex is None:
            return  # a request left unanswered (see on_headers_complete)
        self.receiving = None
        if ex.complete:
            self.sync = self.head_end  # a request without a body ends with its head
            return
        if self.body_parts:
            self._take_body(ex)
        ex.complete = True
        fields = ex.fields
        if fields.chunked:
            self._send_body(ex, LAST_CHUNK)
            self.sync = -1
        else:
            self.sync = self.head_end + fields.length
        if ex.upstream is not None and not ex.responded and not ex.deadline:
            ex.upstream.arm(ex)

    def _take_body(self, ex: Exchange | None) -> None:
        parts = self.body_parts
        if ex is None:
            parts.clear()
            return
        data = framed(parts, chunked=ex.fields.chunked)
        parts.clear()
        self._send_body(ex, data)

    def _send_body(self, ex: Exchange, data: bytes) -> None:
        if ex.replayable:
            keep_body(ex, data)
        upstream = ex.upstream
        if upstream is not None and ex is self.current and not ex.finished:
            upstream.transport.write(data)
        elif not ex.finished:
            if ex.body is None:
                ex.body = [data]
            else:
                ex.body.append(data)
            ex.body_size += len(data)
            if ex.body_size > BUFFER_LIMIT:
                self.pause(PAUSE_BUFFERED)

    # -- answering -------------------------------------------------------------------------

    def dispatch(self, ex: Exchange, server: Server | None = None, now: float = 0.0) -> None:
        """Send ``ex`` to ``server``, or (a new request) to the server its pool chooses.
        ``now``: the loop's time, when the caller has just read it."""
        if server is None:
            self.stats.requests += 1
            ctx = self.ctx
            pool = ex.pool = ctx.route(ex.head) if ctx.routes else ctx.pool
            # Plain pools (no cookie, no hash) skip every per-request lookup.
            server = (
                pool.balancer.pick(pool.candidates, None) if pool.plain
                else self.choose(pool, ex)
            )
            if server is None:
                pool.no_server += 1
                self.respond_error(ex, 503, f'no server available in pool "{pool.name}"')
                return
        ex.server = server
        server.active += 1
        server.requests += 1
        idle = server.idle
        while idle:
            upstream: Upstream = idle.pop()
            if not upstream.closed:
                self.send_request(ex, upstream, now)
                return
        self.loop.create_task(self.connect(ex, server))

    def choose(self, pool: Pool, ex: Exchange) -> Server | None:
        cookies = all_values(ex.head, b"cookie")
        if pool.sticky_cookie is not None:
            pinned_name = cookie_value(cookies, pool.sticky_cookie) if cookies else None
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
                key = header_value(ex.head, pool.hash_name)
            elif cookies:
                key = cookie_value(cookies, pool.hash_name)
        return pool.pick(key)

    def send_request(self, ex: Exchange, upstream: Upstream, now: float = 0.0) -> None:
        """Send ``ex`` on ``upstream``, which carries it from now until its response ends
        (``now``: the loop's time, if the caller has just read it)."""
        upstream.ex = ex
        upstream.down = self
        upstream.uses += 1
        # The response head starts with the next bytes read (this may run while the
        # previous response's last bytes are being parsed: nothing of those belongs to it).
        upstream.awaiting_head = True
        upstream.data = b""
        upstream.head_at = 0
        upstream.partial = None
        ex.upstream = upstream
        if ex.complete:
            # The whole request is sent with its head: its response head is due from now.
            ex.deadline = (now or self.loop.time()) + upstream.server.pool.response_timeout
        fields = ex.fields
        if fields.plain and ex.http11:
            head = ex.head[:-2] + self.forwarded
        else:
            head = self._rewrite_head(ex)
        if ex.body is not None:
            head += b"".join(ex.body)
            ex.body = None
            ex.body_size = 0
            self.resume(PAUSE_BUFFERED)
        upstream.transport.write(head)

    def _rewrite_head(self, ex: Exchange) -> bytes:
        fields = ex.fields
        extra = []
        if ex.upgrade:
            extra.append(b"Connection: upgrade")
            extra.append(b"Upgrade: " + (fields.upgrade or b""))
        elif fields.chunked:
            extra.append(b"Transfer-Encoding: chunked")
        if fields.forwarded_for is None:
            extra.append(b"X-Forwarded-For: " + self.client_ip)
        else:
            extra.append(b"X-Forwarded-For: %b, %b" % (fields.forwarded_for, self.client_ip))
        extra.append(b"X-Forwarded-Proto: " + self.ctx.proto)
        if not ex.http11 and ex.server is not None and header_value(ex.head, b"host") is None:
            # HTTP/1.0 may omit Host; the HTTP/1.1 request to the server must carry one.
            extra.append(b"Host: " + str(ex.server.address).encode())
        return rewrite_request(ex.head, fields, extra)

    async def connect(self, ex: Exchange, server: Server) -> None:
        pool = ex.pool
        assert pool is not None
        try:
            _, upstream = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: Upstream(server, self.loop), server.host, server.port
                ),
                pool.config.timeouts.connect,
            )
        except (OSError, TimeoutError) as exc:
            reason = connect_error(exc)
            detail = f"cannot connect to server {server.name} ({server.address}): {reason}"
            server.failures += 1
            server.responses[0] += 1
            pool.record_failure(server, self.loop.time(), f"connect: {reason}")
            if ex.finished or self.closed:
                return
            if not self.retry(ex, server, "connect-failure"):
                self.respond_error(ex, 502, detail)
            return
        if upstream.closed:
            # Made, then lost before this task ran again (the server died between its
            # accept and now): connection_lost knew of no request on it, so this one is
            # retried here; sent on the dead socket it would wait for nothing.
            server.failures += 1
            server.responses[0] += 1
            pool.record_failure(server, self.loop.time(), "connection closed, no response")
            if not (ex.finished or self.closed) and not self.retry(ex, server, "reset"):
                self.respond_error(
                    ex, 502, f"server {server.name} closed the connection before responding"
                )
            return
        if ex.finished or self.closed or ex is not self.current:
            server.idle.append(upstream)  # a fresh connection nobody used: keep it
            return
        self.send_request(ex, upstream)

    def retry_fresh(self, ex: Exchange, server: Server) -> None:
        """Resend ``ex`` to ``server`` on a new connection (its reused one was stale)."""
        ex.deadline = 0.0
        ex.upstream = None
        replay(ex)
        self.loop.create_task(self.connect(ex, server))

    def retry(self, ex: Exchange, server: Server, cause: str) -> bool:
        """``server`` could not answer ``ex`` (``cause``: ``connect-failure``, ``timeout``,
        ``reset`` or a status like ``"503"``): send it to another server if the pool's
        retry policy (:func:`ninelives.http.retry.retry_target`) allows. True when it was
        sent again; the caller answers the client otherwise."""
        if self.closed:
            return False
        other = retry_target(ex, server, cause)
        if other is None:
            return False
        upstream = ex.upstream
        if upstream is not None:
            upstream.abandon()  # its answer (if any) is not wanted any more
        ex.upstream = None
        ex.deadline = 0.0
        if ex.server is server:
            server.active -= 1
            ex.server = None
        replay(ex)
        self.dispatch(ex, other)
        return True

    def on_response_timeout(self, ex: Exchange) -> None:
        ex.deadline = 0.0
        if ex.finished or ex.responded:
            return
        server = ex.server
        assert server is not None and ex.pool is not None
        server.failures += 1
        server.responses[0] += 1
        timeout = ex.pool.config.timeouts.response
        ex.pool.record_failure(server, self.loop.time(), f"no response within {timeout:g}s")
        if ex.upstream is not None:
            ex.upstream.abandon()
            ex.upstream = None
        if self.retry(ex, server, "timeout"):
            return
        self.respond_error(ex, 504, f"server {server.name} did not respond within {timeout:g}s")

    def respond_error(self, ex: Exchange, status: int, detail: str) -> None:
        """Answer ``ex`` with an error of the proxy's own; nothing of a server's was sent."""
        close = not ex.complete or not ex.keep_alive or self.closing
        ex.status = status
        self.stats.responses[status // 100] += 1
        self.transport.write(error_response(status, detail, close=close))
        ex.responded = True
        if close:
            ex.keep_alive = False
        self.finish(ex)

    def finish(self, ex: Exchange, now: float | None = None) -> None:
        """``ex`` is answered (at loop time ``now``): account for it (latency, its server
        freed), then close, or go on with the next request."""
        if ex.finished:
            return
        ex.finished = True
        ex.deadline = 0.0
        ex.upstream = None
        pool = ex.pool
        if pool is not None:
            # Into the listener's and the pool's histograms, one bucket search for both.
            seconds = (self.loop.time() if now is None else now) - ex.started
            index = bisect_left(LATENCY_BUCKETS, seconds)
            latency = self.stats.latency
            latency.counts[index] += 1
            latency.sum += seconds
            latency = pool.latency
            latency.counts[index] += 1
            latency.sum += seconds
        server = ex.server
        if server is not None:
            server.active -= 1
        if ex.tried is not None and pool is not None:
            pool.retrying -= 1
            pool.retry_outcomes["answered" if 0 < ex.status < 500 else "failed"] += 1
        self.current = None
        if self.tunnel is not None:
            return  # the connection carries a tunnel from now on (start_tunnel)
        if self.paused:
            self.resume(PAUSE_UPSTREAM_FULL | PAUSE_BUFFERED)
        if not ex.keep_alive or not ex.complete or self.closing or self.closed:
            self.close()
            return
        if self.pending:
            nxt = self.pending.pop(0)
            if not self.pending:
                self.resume(PAUSE_PIPELINE)
            self.current = nxt
            self.dispatch(nxt)

    def start_tunnel(self, upstream: Upstream) -> None:
        """The server accepted the upgrade (101): relay raw bytes both ways from now on."""
        ex = self.current
        self.tunnel = upstream
        buffered = self.upgrade_buffer or []
        self.upgrade_buffer = None
        if ex is not None:
            self.finish(ex)
        for data in buffered:
            if data:
                upstream.transport.write(data)
        self.resume(PAUSE_UPGRADE | PAUSE_UPSTREAM_FULL | PAUSE_BUFFERED)

    def reject(self, status: int, detail: str) -> None:
        """A malformed request: the client is at fault; answer ``status`` and close."""
        self.stats.rejected += 1
        self.stats.responses[4] += 1
        self.closing = True
        self.receiving = None
        if self.current is None:
            self.transport.write(error_response(status, detail, close=True))
            self.close()
        else:
            # With a request in flight its response comes first; then the connection closes.
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
