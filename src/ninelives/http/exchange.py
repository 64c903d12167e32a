"""One request/response between a client and a server, as the proxy tracks it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ninelives.http.heads import RequestFields

if TYPE_CHECKING:
    from ninelives.http.upstream import Upstream
    from ninelives.pool import Pool, Server


class Exchange:
    """The state of one proxied request, from its head to the last response byte.

    A plain slotted class rather than a dataclass: one is made per request on the hot path,
    so only what varies is set in ``__init__``.
    """

    __slots__ = (
        "head", "method", "http11", "keep_alive", "fields", "upgrade", "body", "body_size",
        "complete", "pool", "server", "upstream", "started", "responded", "set_cookie",
        "deadline", "tried", "finished", "is_head", "replayable", "kept", "kept_size", "status",
    )

    def __init__(
        self, head: bytes, fields: RequestFields, method: bytes, http11: bool,
        keep_alive: bool, started: float,
    ) -> None:
        self.head = head  # the raw request head as the client sent it (llhttp accepted it)
        self.fields = fields
        self.method = method
        self.http11 = http11
        self.keep_alive = keep_alive
        self.upgrade = False  # a real upgrade request (Connection: upgrade + Upgrade)
        # Request body bytes (already framed for the server) not yet written to it: the
        # server connection is not ready yet, or the request waits behind a pipelined one.
        self.body: list[bytes] | None = None
        self.body_size = 0
        # The whole request has been received from the client (so far: the head, when
        # there is no body).
        self.complete = fields.bodyless
        self.pool: Pool | None = None
        self.server: Server | None = None
        self.upstream: Upstream | None = None
        self.started = started
        self.responded = False  # a byte of the response went to the client
        self.set_cookie = False  # the response must (re)pin the client with a sticky cookie
        self.deadline = 0.0  # when the response head is due (loop time); 0 = not waiting
        self.tried: list[Any] | None = None  # servers that failed, on retry only
        # The request body as sent (framed), kept for a retry while it is small enough.
        self.replayable = True
        self.kept: list[bytes] | None = None
        self.kept_size = 0
        self.status = 0  # of the response the client got (a server's, or the proxy's)
        self.finished = False
        self.is_head = method == b"HEAD"


def cookie_value(cookie_header: bytes, name: bytes) -> bytes | None:
    """The value of cookie ``name`` in a Cookie header (RFC 6265 section 4.2.1)."""
    for part in cookie_header.split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key == name:
            return value.strip(b'"')
    return None
