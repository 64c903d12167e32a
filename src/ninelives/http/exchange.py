"""One request/response between a client and a server, as the proxy tracks it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ninelives.http.upstream import Upstream
    from ninelives.pool import Pool, Server


class Exchange:
    """The state of one proxied request, from its first header to the last response byte.

    A plain slotted class rather than a dataclass: one is made per request on the hot path.
    """

    __slots__ = (
        "method", "url", "http11", "keep_alive", "headers", "host", "cookie", "xff",
        "connection", "upgrade", "chunked", "content_length", "expects_body", "body",
        "body_size", "complete", "pool", "server", "upstream", "started", "responded",
        "set_cookie", "deadline", "tried", "finished", "is_head",
    )

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.http11 = True
        self.keep_alive = True
        self.headers: list[bytes] = []  # forwarded request headers, each "Name: value\r\n"
        self.host = b""
        self.cookie: bytes | None = None
        self.xff: bytes | None = None
        self.connection: bytes | None = None
        self.upgrade: bytes | None = None
        self.chunked = False  # the request body is chunked (re-encoded towards the server)
        self.content_length = b""
        self.expects_body = False
        # Request body bytes (already framed for the server) not yet written to it: the
        # server connection is not ready yet, or the request waits behind a pipelined one.
        self.body: list[bytes] = []
        self.body_size = 0
        self.complete = False  # the whole request has been received from the client
        self.pool: Pool | None = None
        self.server: Server | None = None
        self.upstream: Upstream | None = None
        self.started = 0.0
        self.responded = False  # a byte of the response went to the client
        self.set_cookie = False  # the response must (re)pin the client with a sticky cookie
        self.deadline = 0.0  # when the response head is due (loop time); 0 = not waiting
        self.tried: list[Any] | None = None  # servers that failed to connect, on retry only
        self.finished = False
        self.is_head = False

    def header_value(self, lname: bytes) -> bytes | None:
        """A forwarded header's value by lower-case name (slow path: hash on a header)."""
        prefix = lname + b":"
        size = len(prefix)
        for line in self.headers:
            if line[:size].lower() == prefix:
                return line[size:].strip()
        return None


def cookie_value(cookie_header: bytes, name: bytes) -> bytes | None:
    """The value of cookie ``name`` in a Cookie header (RFC 6265 section 4.2.1)."""
    for part in cookie_header.split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key == name:
            return value.strip(b'"')
    return None
