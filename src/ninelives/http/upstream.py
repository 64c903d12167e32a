"""The server side of the HTTP proxy: one pooled keep-alive connection to one server.

An ``Upstream`` carries one exchange at a time. Between exchanges it waits in its
server's idle list. httptools parses the response; the head is rewritten (hop-by-hop
headers out, framing for the client, sticky cookie in) and the body is streamed to the
client as it arrives, pausing this socket when the client cannot keep up.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httptools

from ninelives.http.messages import (
    BODYLESS_STATUSES,
    CRLF,
    HOP_BY_HOP,
    IDEMPOTENT,
    LAST_CHUNK,
    RESPONSE_NAME_LENGTHS,
    chunk,
    status_line,
)

if TYPE_CHECKING:
    from ninelives.http.downstream import Downstream
    from ninelives.http.exchange import Exchange
    from ninelives.pool import Server

WRITE_HIGH_WATER = 256 * 1024
PAUSE_UPSTREAM_FULL = 2  # the Downstream pause reason this connection's backpressure sets

# How the response body is framed towards the client.
FRAME_NONE = 0  # no body (HEAD, 1xx, 204, 304)
FRAME_RAW = 1  # bytes as they come (Content-Length, or close-delimited to a 1.0 client)
FRAME_CHUNKED = 2  # re-encoded as chunks (chunked or close-delimited from the server)


class Upstream(asyncio.Protocol):
    __slots__ = (
        "server", "loop", "transport", "parser", "ex", "down", "reason", "headers",
        "chunked", "has_length", "upgrade", "framing", "head", "status", "closed",
        "reset_parser", "reads_paused", "tunnel", "uses",
    )

    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: Exchange | None = None
        self.down: Downstream | None = None
        self.reason = b""
        self.headers: list[bytes] = []
        self.chunked = False
        self.has_length = False
        self.upgrade: bytes | None = None
        self.framing = FRAME_RAW
        self.head: bytes | None = None  # response head not yet written (sent with the body)
        self.status = 0
        self.closed = False
        self.reset_parser = False
        self.reads_paused = False
        self.tunnel = False
        self.uses = 0  # exchanges carried, so a failure on a reused connection is known

    # -- life cycle ------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def usable(self) -> bool:
        return not self.closed and not self.transport.is_closing()

    def attach(self, ex: Exchange, down: Downstream) -> None:
        self.ex = ex
        self.down = down
        self.uses += 1
        ex.upstream = self
        pool = ex.pool
        assert pool is not None
        ex.deadline = deadline = self.loop.time() + pool.config.timeouts.response
        pool.response_deadlines.append((deadline, ex))

    def abandon(self) -> None:
        """The exchange is over before its response was read: this socket is unusable."""
        self.ex = None
        self.down = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def release(self) -> None:
        """The response is complete: keep the connection for the next request, or close."""
        ex = self.ex
        self.ex = None
        self.down = None
        if self.reads_paused:
            self.reads_paused = False
            self.transport.resume_reading()
        if (
            ex is not None and ex.complete and not self.closed
            and self.parser.should_keep_alive() and not self.transport.is_closing()
        ):
            self.server.idle.append(self)
        else:
            self.closed = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        idle = self.server.idle
        if self in idle:
            idle.remove(self)
        down = self.down
        ex = self.ex
        if down is None:
            return
        if self.tunnel:
            down.close()
            return
        if ex is None or ex.finished:
            return
        if self.head is not None or ex.responded:
            if self.has_length or self.chunked or self.framing == FRAME_NONE:
                # Truncated mid-body: the client must not take it for a whole response.
                self.ex = None
                down.transport.abort()
                return
            # A close-delimited body ends with the connection: that is its normal end.
            tail = LAST_CHUNK if self.framing == FRAME_CHUNKED else b""
            self._write((self.head or b"") + tail)
            self.head = None
            self.ex = None
            down.finish(ex)
            return
        server = self.server
        self.ex = None
        self.down = None
        replayable = ex.complete and not ex.expects_body
        if replayable and self.uses > 1 and (ex.tried is None or server not in ex.tried):
            # A reused keep-alive connection that the server had closed meanwhile: most
            # likely the request never reached it. Send it again on a fresh connection.
            down.retry_fresh(ex, server)
            return
        server.failures += 1
        server.responses[0] += 1
        detail = f"server {server.name} closed the connection before responding"
        if replayable and ex.method in IDEMPOTENT:
            server.active -= 1
            ex.server = None
            ex.upstream = None
            down.fail_over(ex, server, detail)
            return
        down.respond_error(ex, 502, detail)

    # -- reading the response --------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.reads_paused and not self.closed:
            self.reads_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reads_paused and not self.closed:
            self.reads_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        # The server does not take the request body fast enough: stop reading the client.
        if self.down is not None:
            self.down.pause(PAUSE_UPSTREAM_FULL)

    def resume_writing(self) -> None:
        if self.down is not None:
            self.down.resume(PAUSE_UPSTREAM_FULL)

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            assert self.down is not None
            self.down.transport.write(data)
            return
        if self.ex is None:
            # A server must not speak before it is asked: drop the connection.
            self.closed = True
            self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._start_tunnel(data[upgrade.args[0]:])
        except httptools.HttpParserError as exc:
            self._malformed(exc)
        if self.reset_parser:
            self.reset_parser = False
            self.parser = httptools.HttpResponseParser(self)

    def eof_received(self) -> bool:
        if self.tunnel and self.down is not None:
            if self.down.transport.can_write_eof():
                self.down.transport.write_eof()
            return True
        return False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in RESPONSE_NAME_LENGTHS:
            lname = name.lower()
            if lname in HOP_BY_HOP:
                if lname == b"transfer-encoding":
                    self.chunked = True
                elif lname == b"upgrade":
                    self.upgrade = value
                return
            if lname == b"content-length":
                self.has_length = True
        self.headers.append(b"".join((name, b": ", value, b"\r\n")))

    def on_headers_complete(self) -> None:
        ex = self.ex
        down = self.down
        assert ex is not None and down is not None
        status = self.status = self.parser.get_status_code()
        if status < 200 and status != 101:
            # 100 Continue, 103 Early Hints: relay, then wait for the final response.
            self._write(status_line(status, self.reason) + b"".join(self.headers) + CRLF)
            self._reset_head()
            return
        ex.deadline = 0.0
        parts = [status_line(status, self.reason)]
        parts.extend(self.headers)
        if status == 101:
            parts.append(b"Connection: upgrade\r\nUpgrade: %b\r\n" % (self.upgrade or b""))
            self.framing = FRAME_NONE
        elif ex.is_head or status in BODYLESS_STATUSES:
            self.framing = FRAME_NONE
        elif self.has_length and not self.chunked:
            self.framing = FRAME_RAW
        elif ex.http11:
            # Chunked, or delimited by the close of the connection: chunks for the client,
            # so that its connection can stay open after the response.
            parts.append(b"Transfer-Encoding: chunked\r\n")
            self.framing = FRAME_CHUNKED
        else:
            self.framing = FRAME_RAW
            ex.keep_alive = False
        pool = ex.pool
        assert pool is not None and ex.server is not None
        if ex.set_cookie and pool.sticky_cookie is not None:
            parts.append(
                b"Set-Cookie: %b=%b; Path=/; HttpOnly\r\n"
                % (pool.sticky_cookie, ex.server.name.encode())
            )
        if status != 101:
            if not ex.keep_alive or down.closing:
                ex.keep_alive = False
                parts.append(b"Connection: close\r\n")
            elif not ex.http11:
                parts.append(b"Connection: keep-alive\r\n")
        parts.append(CRLF)
        self.head = b"".join(parts)
        ex.responded = True
        klass = status // 100
        down.stats.responses[klass] += 1
        self.server.responses[klass] += 1
        if ex.is_head and status != 101:
            # llhttp cannot be told that a HEAD response has no body: end it here and give
            # the connection a fresh parser, so a Content-Length does not eat the next reply.
            self.reset_parser = True
            self._complete()

    def on_body(self, body: bytes) -> None:
        if self.framing == FRAME_CHUNKED:
            body = chunk(body)
        elif self.framing == FRAME_NONE:
            return
        head = self.head
        if head is not None:
            self.head = None
            body = head + body
        self._write(body)

    def on_message_complete(self) -> None:
        if self.status < 200 or self.status == 101 or self.reset_parser:
            return
        self._complete()

    def _complete(self) -> None:
        ex = self.ex
        down = self.down
        if ex is None or down is None:
            return
        tail = LAST_CHUNK if self.framing == FRAME_CHUNKED else b""
        head = self.head
        if head is not None:
            self.head = None
            tail = head + tail
        if tail:
            self._write(tail)
        self._reset_head()
        self.release()
        down.finish(ex)

    def _reset_head(self) -> None:
        self.reason = b""
        self.headers = []
        self.chunked = False
        self.has_length = False
        self.upgrade = None
        self.status = 0

    def _write(self, data: bytes) -> None:
        down = self.down
        if down is not None and not down.closed:
            down.transport.write(data)

    def _start_tunnel(self, rest: bytes) -> None:
        down = self.down
        if down is None or self.status != 101:
            self._malformed(ValueError("unexpected upgrade"))
            return
        head = self.head or b""
        self.head = None
        self.tunnel = True
        self.ex = None
        down.transport.write(head + rest)
        down.start_tunnel(self)

    def _malformed(self, exc: Exception) -> None:
        ex = self.ex
        down = self.down
        self.abandon()
        if ex is None or down is None or ex.finished:
            return
        server = self.server
        server.failures += 1
        if ex.responded:
            down.transport.abort()
            return
        server.responses[0] += 1
        down.respond_error(ex, 502, f"server {server.name} sent a malformed response: {exc}")
