"""Rewriting a response head for the client, from the raw bytes llhttp has accepted.

llhttp (strict mode) has validated the head before these functions see it: every line
ends in CRLF, no obs-fold, no bare CR, no space before a colon. So the head can be
handled as lines without parsing it again. The common case (Content-Length, keep-alive,
nothing hop-by-hop but ``Connection: keep-alive``) needs no rewrite at all: the raw head
goes to the client as it came, which is what makes the hot path cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ninelives.http.messages import HOP_BY_HOP

# A hop-by-hop field or Content-Length: the only fields the proxy must look at.
_FIELD = re.compile(
    rb"\r\n(connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade"
    rb"|proxy-authenticate|proxy-authorization|content-length):[ \t]*([^\r]*)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class HeadFields:
    """What the proxy needs to know of a response head."""

    has_length: bool
    chunked: bool
    upgrade: bytes | None
    connection: bytes | None  # the Connection value, lower-case, several joined by ","
    plain: bool  # nothing hop-by-hop but at most "Connection: keep-alive"


def scan(head: bytes) -> HeadFields:
    has_length = chunked = False
    upgrade = connection = None
    plain = True
    for name, value in _FIELD.findall(head):
        lname = name.lower()
        if lname == b"content-length":
            has_length = True
            continue
        if lname == b"connection":
            value = value.strip().lower()
            connection = value if connection is None else connection + b"," + value
            if value != b"keep-alive":
                plain = False
            continue
        plain = False
        if lname == b"transfer-encoding":
            chunked = True
        elif lname == b"upgrade":
            upgrade = value.strip()
    return HeadFields(has_length, chunked, upgrade, connection, plain)


def rewrite(head: bytes, fields: HeadFields, extra: list[bytes]) -> bytes:
    """The head for the client: HTTP/1.1, hop-by-hop fields (and those that Connection
    names) removed, then ``extra`` lines (framing, Connection, Set-Cookie) added."""
    drop = HOP_BY_HOP
    if fields.connection is not None:
        named = {t.strip() for t in fields.connection.split(b",")} - {b"", b"close", b"keep-alive"}
        if named:
            drop = drop | named
    lines = head[:-4].split(b"\r\n")
    out = [b"HTTP/1.1" + lines[0][8:]]
    for line in lines[1:]:
        if line.split(b":", 1)[0].lower() not in drop:
            out.append(line)
    out.extend(extra)
    out.append(b"\r\n")
    return b"\r\n".join(out)
