"""The server side of the HTTP proxy: one pooled keep-alive connection to one server.

An ``Upstream`` carries one exchange at a time. Between exchanges it waits in its
server's idle list. httptools parses the response. Its head is taken as raw bytes from
the socket data once llhttp has accepted it, and goes to the client unchanged when it
needs nothing (the common case); otherwise it is rewritten (hop-by-hop fields out,
framing for the client, sticky cookie in). The body is streamed to the client as it
arrives, pausing this socket when the client cannot keep up.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httptools

from ninelives.http.heads import HeadFields, rewrite, scan
from ninelives.http.messages import (
    BODY_STATUSES,
    BODYLESS_STATUSES,
    LAST_CHUNK,
    framed,
)

if TYPE_CHECKING:
    from ninelives.http.downstream import Downstream
    from ninelives.http.exchange import Exchange
    from ninelives.pool import Server

WRITE_HIGH_WATER = 256 * 1024
MAX_HEAD = 64 * 1024  # a response head larger than this is refused (502), as HAProxy does
PAUSE_UPSTREAM_FULL = 2  # the Downstream pause reason this connection's backpressure sets
# What ``seen_head`` (empty, never a real head) stands for before the first response.
UNSEEN = HeadFields(False, False, None, None, False)

# How the response body is framed towards the client.
FRAME_NONE = 0  # no body (HEAD, 1xx, 204, 304)
FRAME_RAW = 1  # bytes as they come (Content-Length, or close-delimited to a 1.0 client)
FRAME_CHUNKED = 2  # re-encoded as chunks (chunked or close-delimited from the server)


class Upstream(asyncio.Protocol):
    __slots__ = (
        "server", "loop", "transport", "parser", "ex", "down", "data", "head_at", "partial",
        "awaiting_head", "fields", "framing", "head", "status", "closed", "reset_parser",
        "body_due",
        "reads_paused", "tunnel", "uses", "body_parts", "on_body", "idle_since", "reads",
        "swept_reads", "quiet_since", "seen_head", "seen_fields", "seen_status",
        "seen_keep_alive", "keep_alive",
    )

    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.transport: Any = None
        # llhttp appends body bytes here from C (no Python frame per body chunk).
        self.body_parts: list[bytes] = []
        self.on_body = self.body_parts.append
        self.parser = httptools.HttpResponseParser(self)
        self.ex: Exchange | None = None
        self.down: Downstream | None = None
        # Where the response head starts: in ``data`` (the bytes being parsed) at
        # ``head_at``, after ``partial`` (the start of a head split over several reads).
        self.data = b""
        self.head_at = 0
        self.partial: bytes | None = None
        self.awaiting_head = False
        self.fields: HeadFields | None = None
        self.framing = FRAME_RAW
        self.head: bytes | None = None  # response head not yet written (sent with the body)
        self.status = 0
        self.closed = False
        self.reset_parser = False
        # A final response head (not 101) went through and the end of its body is due.
        self.body_due = False
        self.reads_paused = False
        self.tunnel = False
        self.uses = 0  # exchanges carried, so a failure on a reused connection is known
        self.idle_since = loop.time()  # when it went back to its server's idle list
        # Reads so far, and as the idle sweep last saw them: a response whose server went
        # silent mid-body is found by the sweep without a clock read per socket read.
        self.reads = 0
        self.swept_reads = 0
        self.quiet_since = 0.0
        # The last head scanned on this connection and what the scan and llhttp found (all
        # of it follows from the head's bytes): a server tends to send the same head again
        # (only Date changes, once a second), and comparing bytes costs a fraction of
        # scanning them and of asking llhttp.
        self.seen_head = b""
        self.seen_fields = UNSEEN
        self.seen_status = 0
        self.seen_keep_alive = False
        # The server keeps the connection open after this response (llhttp's answer for
        # its head, which knows the version, Connection and the framing).
        self.keep_alive = False

    # -- life cycle ------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.server.conns.add(self)

    def arm(self, ex: Exchange) -> None:
        """The rest of the request body is sent: from now on its response head is due
        within ``timeouts.response`` (a long upload does not eat into that time).
        ``expire_responses`` finds it through ``Server.conns``."""
        ex.deadline = self.loop.time() + self.server.pool.response_timeout

    def abandon(self) -> None:
        """The exchange is over before its response was read: this socket is unusable."""
        self.ex = None
        self.down = None
        self.body_due = False
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.conns.discard(self)
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
        fields = self.fields
        if fields is not None:
            if fields.has_length or fields.chunked or self.framing == FRAME_NONE:
                # Truncated mid-body: the client must not take it for a whole response.
                self.ex = None
                down.transport.abort()
                return
            # A close-delimited body ends with the connection: that is its normal end.
            self._relay_body(LAST_CHUNK if self.framing == FRAME_CHUNKED else b"")
            self.ex = None
            down.finish(ex)
            return
        server = self.server
        self.ex = None
        self.down = None
        if (
            ex.complete and ex.fields.bodyless and self.uses > 1
            and (ex.tried is None or server not in ex.tried)
        ):
            # A reused keep-alive connection that the server had closed meanwhile: most
            # likely the request never reached it. Send it again on a fresh connection.
            down.retry_fresh(ex, server)
            return
        server.failures += 1
        server.responses[0] += 1
        server.pool.record_failure(server, self.loop.time(), "connection closed, no response")
        if not down.retry(ex, server, "reset"):
            down.respond_error(
                ex, 502, f"server {server.name} closed the connection before responding"
            )

    def server_down(self) -> None:
        """Health checks found the server down while this connection waits for a response
        head: retry the request on another server now (as a ``timeout``, under the same
        rules) instead of waiting for ``timeouts.response``."""
        ex = self.ex
        down = self.down
        if ex is None or down is None or not self.awaiting_head or ex.responded:
            return
        down.retry(ex, self.server, "timeout")

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
        self.reads += 1
        if self.awaiting_head:
            self.data = data
            self.head_at = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._start_tunnel(data[upgrade.args[0]:])
        except httptools.HttpParserError as exc:
            self._malformed(exc)
        if self.body_parts:
            self._relay_body(b"")
        if self.awaiting_head and self.ex is not None:
            # The head is not complete yet: keep its start for when it is.
            rest = self.data[self.head_at:]
            self.partial = rest if self.partial is None else self.partial + rest
            if len(self.partial) > MAX_HEAD:
                self._malformed(ValueError(f"response head larger than {MAX_HEAD} bytes"))
        self.data = b""
        if self.reset_parser:
            self.reset_parser = False
            self.parser = httptools.HttpResponseParser(self)

    def eof_received(self) -> bool:
        if self.tunnel and self.down is not None:
            if self.down.transport.can_write_eof():
                self.down.transport.write_eof()
            return True
        self.closed = True  # the server is done with it: never hand it out again
        return False

    def on_headers_complete(self) -> None:
        ex = self.ex
        down = self.down
        if TYPE_CHECKING:
            assert ex is not None and down is not None
        # The raw bytes of the head llhttp has just accepted: in this read, or begun in
        # an earlier one (``partial``).
        data = self.data
        start = self.head_at
        if self.partial is not None:
            data = self.data = self.partial + data[start:]
            start = 0
            self.partial = None
        end = self.head_at = data.index(b"\r\n\r\n", start) + 4
        head = data[start:end]
        if head != self.seen_head:
            parser = self.parser
            self.seen_fields = scan(head)
            self.seen_status = parser.get_status_code()
            self.seen_keep_alive = parser.should_keep_alive()
            self.seen_head = head
        fields = self.seen_fields
        status = self.status = self.seen_status
        self.keep_alive = self.seen_keep_alive
        if (
            fields.passthrough and status in BODY_STATUSES and ex.keep_alive and ex.http11
            and not ex.is_head and not ex.set_cookie and not down.closing
        ):
            # The common case: the head goes to the client as it came, with the body.
            self.framing = FRAME_RAW
            self.head = head
        elif status < 200 and status != 101:
            # 100 Continue, 103 Early Hints: relay, then wait for the final response. An
            # HTTP/1.0 client must not get one (RFC 9110 section 15.2).
            if ex.http11:
                self._write(rewrite(head, fields, []))
            return
        elif status >= 500 and self._server_error(ex, down, status):
            return  # sent to another server; this connection is dropped
        else:
            self._frame(ex, down, head, fields, status)
        self.awaiting_head = False
        self.body_due = status != 101
        self.fields = fields
        ex.deadline = 0.0  # the response head came: no more response timeout
        ex.responded = True
        ex.status = status
        klass = status // 100
        down.stats.responses[klass] += 1
        self.server.responses[klass] += 1
        if ex.is_head and status != 101:
            # llhttp cannot be told that a HEAD response has no body: end it here and give
            # the connection a fresh parser, so a Content-Length does not eat the next reply.
            self.on_message_complete()
            self.reset_parser = True

    def _server_error(self, ex: Exchange, down: Downstream, status: int) -> bool:
        """A 5xx response head: a failure for outlier detection, and retried on another
        server when the pool's policy allows it (True: this response is dropped)."""
        server = self.server
        server.pool.record_failure(server, self.loop.time(), f"status {status}")
        if down.retry(ex, server, str(status)):
            server.responses[5] += 1  # the server did answer, though the client never saw it
            return True
        return False

    def _frame(
        self, ex: Exchange, down: Downstream, head: bytes, fields: HeadFields, status: int
    ) -> None:
        """How the response body goes to the client, and the head it gets with it (any
        response but the common case of ``on_headers_complete``)."""
        self.fields = fields
        close = not ex.keep_alive or down.closing
        if status == 101 or ex.is_head or status in BODYLESS_STATUSES:
            self.framing = FRAME_NONE
        elif fields.has_length and not fields.chunked:
            self.framing = FRAME_RAW
        elif ex.http11:
            # Chunked, or delimited by the close of the connection: chunks for the client,
            # so that its connection can stay open after the response.
            self.framing = FRAME_CHUNKED
        else:
            self.framing = FRAME_RAW
            close = True
        if (
            fields.plain and not close and ex.http11 and not ex.set_cookie
            and self.framing != FRAME_CHUNKED and head.startswith(b"HTTP/1.1 ")
        ):
            self.head = head  # nothing to change: the raw head goes through
        else:
            self.head = rewrite(head, fields, self._extra(ex, status, close))
        if close:
            ex.keep_alive = False

    def _extra(self, ex: Exchange, status: int, close: bool) -> list[bytes]:
        """Header lines this hop adds to a rewritten head."""
        extra = []
        if status == 101:
            assert self.fields is not None
            extra.append(b"Connection: upgrade")
            extra.append(b"Upgrade: " + (self.fields.upgrade or b""))
            return extra
        if self.framing == FRAME_CHUNKED:
            extra.append(b"Transfer-Encoding: chunked")
        pool = ex.pool
        if ex.set_cookie and pool is not None and pool.sticky_cookie is not None:
            assert ex.server is not None
            name = ex.server.name.encode()
            extra.append(b"Set-Cookie: %b=%b; Path=/; HttpOnly" % (pool.sticky_cookie, name))
        if close:
            extra.append(b"Connection: close")
        elif not ex.http11:
            extra.append(b"Connection: keep-alive")
        return extra

    def _relay_body(self, tail: bytes) -> None:
        """Send what llhttp collected of the body (and the pending head, and ``tail``)."""
        parts = self.body_parts
        framing = self.framing
        body = b"" if framing == FRAME_NONE else framed(parts, chunked=framing == FRAME_CHUNKED)
        parts.clear()
        head = self.head
        if head is not None:
            self.head = None
            body = head + body
        if tail:
            body += tail
        down = self.down
        if body and down is not None and not down.closed:
            down.transport.write(body)

    def on_message_complete(self) -> None:
        """The response is complete: send what is left of it, pool the connection (or
        close it) and let the client connection go on."""
        if not self.body_due:
            return  # after a 1xx; a 101 becomes a tunnel; a HEAD response already ended
        self.body_due = False
        ex = self.ex
        down = self.down
        if TYPE_CHECKING:
            assert ex is not None and down is not None
        if self.framing == FRAME_RAW:  # the common case, inline: one write, head and body
            parts = self.body_parts
            head = self.head
            if head is not None:
                self.head = None
                data = head + b"".join(parts) if parts else head
            else:
                data = b"".join(parts)
            parts.clear()
            if data and not down.closed:
                down.transport.write(data)
        else:
            self._relay_body(LAST_CHUNK if self.framing == FRAME_CHUNKED else b"")
        # Keep the connection for the next request, or close it.
        self.ex = None
        self.down = None
        self.fields = None
        if self.reads_paused:
            self.reads_paused = False
            self.transport.resume_reading()
        now = self.loop.time()
        if (
            ex.complete and not self.closed
            and self.keep_alive and not self.transport.is_closing()
        ):
            self.idle_since = now
            self.server.idle.append(self)
        else:
            self.closed = True
            self.transport.close()
        down.finish(ex, now)

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
        server.pool.record_failure(server, self.loop.time(), f"malformed response: {exc}")
        if ex.responded:
            down.transport.abort()
            return
        server.responses[0] += 1
        down.respond_error(ex, 502, f"server {server.name} sent a malformed response: {exc}")
