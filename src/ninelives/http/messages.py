"""Pieces of HTTP/1.1 messages the proxy writes itself: error responses, framing, header rules.

Parsing is never done here: httptools (llhttp) parses every byte that arrives. This module
only knows which headers are hop-by-hop (RFC 9110 section 7.6.1) and how to frame bodies.
"""

from __future__ import annotations

from http import HTTPStatus

# Hop-by-hop headers: meaningful for one connection only, never forwarded (RFC 9110 7.6.1,
# plus the historical Keep-Alive and Proxy-Connection that clients still send).
HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
    }
)

# Methods that may be sent again when a server dropped the connection without answering
# (RFC 9110 section 9.2.2); others reach another server only when nothing was sent.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

# Statuses whose response never has a body whatever its headers say.
BODYLESS_STATUSES = frozenset({204, 304})
# Final statuses whose response can go through on the proxy's fast path: framed by its own
# headers, and not a server error (5xx: counted against the server, perhaps retried).
BODY_STATUSES = frozenset(range(200, 500)) - BODYLESS_STATUSES

LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 section 7.1)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def framed(parts: list[bytes], *, chunked: bool) -> bytes:
    """Body bytes collected by llhttp, as they go on: as chunks, or as they came."""
    if chunked:
        return b"".join([chunk(part) for part in parts])
    return parts[0] if len(parts) == 1 else b"".join(parts)


def error_response(status: int, detail: str, *, close: bool) -> bytes:
    """A complete plain-text response the proxy writes itself (400, 502, 503, 504...).

    The body says what failed and who is at fault, so that a client (or an SRE with curl)
    can tell "no server available" from "the server broke the connection".
    """
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}: {detail}\n".encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body
