"""The raw-head functions of the HTTP proxy (src/ninelives/http/heads.py), on bytes only.

Every head here is one llhttp would accept (CRLF line ends, no space before a colon, no
obs-fold): that is the precondition of these functions.
"""

from __future__ import annotations

import pytest

from ninelives.http.heads import (
    PLAIN_REQUEST,
    HeadFields,
    RequestFields,
    all_values,
    header_value,
    request_target,
    rewrite,
    rewrite_request,
    scan,
    scan_request,
)


def head(first: str, *fields: str) -> bytes:
    """A raw head: the start line, the field lines, the blank line."""
    return ("\r\n".join([first, *fields]) + "\r\n\r\n").encode("latin-1")


def lines(raw: bytes) -> list[bytes]:
    """The lines of a head, without the final blank line (which is checked separately)."""
    assert raw.endswith(b"\r\n\r\n"), raw
    assert not raw.endswith(b"\r\n\r\n\r\n"), f"more than one blank line: {raw!r}"
    return raw[:-4].split(b"\r\n")


def names(raw: bytes) -> list[bytes]:
    return [line.split(b":", 1)[0].lower() for line in lines(raw)[1:]]


NGINX = head(
    "HTTP/1.1 200 OK",
    "Server: nginx/1.25.3",
    "Date: Tue, 05 Mar 2024 10:00:00 GMT",
    "Content-Type: text/html; charset=utf-8",
    "Content-Length: 612",
    "Connection: keep-alive",
)


# --- scan (response heads) ---------------------------------------------------------------


def test_scan_plain_nginx_head() -> None:
    fields = scan(NGINX)
    assert fields == HeadFields(
        has_length=True, chunked=False, upgrade=None, connection=b"keep-alive", plain=True,
        passthrough=True,
    )


def test_scan_passthrough_needs_an_http11_status_line_and_a_plain_head_with_length() -> None:
    assert scan(head("HTTP/1.0 200 OK", "Content-Length: 2")).passthrough is False
    assert scan(head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked")).passthrough is False
    assert scan(head("HTTP/1.1 200 OK", "Content-Length: 2", "Connection: close")).passthrough \
        is False
    assert scan(head("HTTP/1.1 200 OK")).passthrough is False  # close-delimited body
    assert scan(head("HTTP/1.1 200 OK", "Content-Length: 2")).passthrough is True


def test_scan_without_any_connection_field_is_plain() -> None:
    fields = scan(head("HTTP/1.1 200 OK", "Content-Length: 0"))
    assert fields.plain and fields.has_length and fields.connection is None


def test_scan_connection_close_is_not_plain() -> None:
    fields = scan(head("HTTP/1.1 200 OK", "Content-Length: 2", "Connection: close"))
    assert fields.plain is False
    assert fields.connection == b"close"
    assert fields.has_length is True


def test_scan_chunked() -> None:
    fields = scan(head("HTTP/1.1 200 OK", "Content-Type: text/plain", "Transfer-Encoding: chunked"))
    assert fields.chunked is True
    assert fields.has_length is False
    assert fields.plain is False


def test_scan_upgrade() -> None:
    fields = scan(
        head(
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        )
    )
    assert fields.upgrade == b"websocket"
    assert fields.connection == b"upgrade"
    assert fields.plain is False


def test_scan_names_are_case_insensitive() -> None:
    fields = scan(
        head(
            "HTTP/1.1 200 OK",
            "CONTENT-LENGTH: 3",
            "transfer-ENCODING: chunked",
            "uPgRaDe: h2c",
            "CONNECTION: Keep-Alive, Upgrade",
        )
    )
    assert fields.has_length is True
    assert fields.chunked is True
    assert fields.upgrade == b"h2c"
    assert fields.connection == b"keep-alive, upgrade"
    assert fields.plain is False


def test_scan_keep_alive_value_in_any_case_is_plain() -> None:
    fields = scan(head("HTTP/1.1 200 OK", "Content-Length: 1", "Connection: Keep-Alive"))
    assert fields.plain is True
    assert fields.connection == b"keep-alive"


def test_scan_keep_alive_said_twice_is_still_plain() -> None:
    fields = scan(
        head(
            "HTTP/1.1 200 OK",
            "Connection: keep-alive",
            "Content-Length: 1",
            "Connection: keep-alive",
        )
    )
    assert fields == HeadFields(
        has_length=True,
        chunked=False,
        upgrade=None,
        connection=b"keep-alive,keep-alive",
        plain=True,
        passthrough=True,
    )


def test_scan_several_connection_fields_are_joined() -> None:
    fields = scan(
        head("HTTP/1.1 200 OK", "Connection: keep-alive", "Content-Length: 1", "Connection: X-A")
    )
    assert fields.connection == b"keep-alive,x-a"
    assert fields.plain is False


def test_scan_text_inside_a_value_does_not_count() -> None:
    fields = scan(
        head(
            "HTTP/1.1 200 OK",
            "Content-Length: 5",
            "X-Note: connection: close; transfer-encoding: chunked",
            "Set-Cookie: upgrade=websocket; te=1",
            "Link: <https://x.test/>; rel=preload, connection:upgrade",
        )
    )
    assert fields == HeadFields(True, False, None, None, True, True)


@pytest.mark.parametrize(
    "field",
    [
        "Connection-Id: 1",
        "Connections: 3",
        "Tea: 1",
        "TE-Extra: 1",
        "Tex: 1",
        "Upgrade-Insecure-Requests: 1",
        "Keep-Alive-Extra: x",
        "Trailers: x",
        "Trailer-Info: x",
        "Transfer-Encoding-Note: chunked",
        "Proxy-Connection-Id: 2",
        "Proxy-Authenticate-Hint: x",
        "Proxy-Authorization-Hint: x",
        "Content-Length-Hint: 7",
        "X-Connection: close",
        "X-Upgrade: websocket",
    ],
)
def test_scan_a_name_that_only_starts_or_ends_with_a_hop_by_hop_name_is_end_to_end(
    field: str,
) -> None:
    raw = head("HTTP/1.1 200 OK", "Content-Length: 2", field, "Connection: keep-alive")
    fields = scan(raw)
    assert fields == HeadFields(True, False, None, b"keep-alive", True, True), field
    # And a rewrite (made for another reason) keeps it.
    out = rewrite(raw, fields, [b"Connection: close"])
    assert field.encode() in lines(out), out


def test_scan_content_length_hint_does_not_count_as_a_length() -> None:
    fields = scan(head("HTTP/1.1 200 OK", "Content-Length-Hint: 7"))
    assert fields.has_length is False


# --- rewrite (response heads) ------------------------------------------------------------


def test_rewrite_drops_hop_by_hop_and_connection_named_fields() -> None:
    raw = head(
        "HTTP/1.1 200 OK",
        "Server: test",
        "Connection: close, X-Secret",
        "X-Secret: 1",
        "Keep-Alive: timeout=5",
        "Proxy-Connection: keep-alive",
        "TE: trailers",
        "Trailer: X-Checksum",
        "Transfer-Encoding: chunked",
        "Upgrade: h2c",
        "Proxy-Authenticate: Basic",
        "Proxy-Authorization: Basic eA==",
        "Set-Cookie: a=1",
        "X-Kept: yes",
        "Set-Cookie: b=2",
    )
    out = rewrite(raw, scan(raw), [b"Transfer-Encoding: chunked", b"Connection: close"])
    assert lines(out) == [
        b"HTTP/1.1 200 OK",
        b"Server: test",
        b"Set-Cookie: a=1",
        b"X-Kept: yes",
        b"Set-Cookie: b=2",
        b"Transfer-Encoding: chunked",
        b"Connection: close",
    ]


def test_rewrite_connection_named_fields_in_any_case() -> None:
    raw = head(
        "HTTP/1.1 200 OK", "Connection: X-SECRET , x-other", "x-secret: 1", "X-Other: 2", "A: b"
    )
    out = rewrite(raw, scan(raw), [])
    assert lines(out) == [b"HTTP/1.1 200 OK", b"A: b"]


def test_rewrite_connection_naming_an_end_to_end_field_drops_it() -> None:
    # RFC 9110 7.6.1: a field named in Connection is hop-by-hop for this message.
    raw = head("HTTP/1.1 200 OK", "Connection: Content-Type", "Content-Type: a/b", "X: 1")
    assert names(rewrite(raw, scan(raw), [])) == [b"x"]


def test_rewrite_turns_http_1_0_into_1_1() -> None:
    raw = head("HTTP/1.0 200 OK", "Content-Length: 2")
    out = rewrite(raw, scan(raw), [b"Connection: close"])
    assert lines(out) == [b"HTTP/1.1 200 OK", b"Content-Length: 2", b"Connection: close"]


def test_rewrite_keeps_a_reason_phrase_with_spaces() -> None:
    raw = head("HTTP/1.0 404 Not Found Here", "Content-Length: 0")
    assert lines(rewrite(raw, scan(raw), []))[0] == b"HTTP/1.1 404 Not Found Here"


def test_rewrite_of_a_head_without_fields() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\n"
    assert rewrite(raw, scan(raw), []) == raw


def test_rewrite_ends_with_exactly_one_blank_line() -> None:
    raw = head("HTTP/1.1 200 OK", "Content-Length: 0")
    assert rewrite(raw, scan(raw), []) == raw
    expected = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n"
    assert rewrite(raw, scan(raw), [b"X-A: 1"]) == expected


def test_rewrite_keeps_values_byte_for_byte() -> None:
    raw = head("HTTP/1.1 200 OK", "X-Spaces:   a  b  ", "X-Colon: a:b:c", "Empty:")
    assert lines(rewrite(raw, scan(raw), []))[1:] == [
        b"X-Spaces:   a  b  ",
        b"X-Colon: a:b:c",
        b"Empty:",
    ]


# --- scan_request / rewrite_request ------------------------------------------------------


def test_scan_request_without_special_fields_is_the_shared_plain_value() -> None:
    raw = head("GET /a HTTP/1.1", "Host: x", "Accept: */*", "Cookie: a=1")
    assert scan_request(raw) is PLAIN_REQUEST
    assert RequestFields(0, False, None, None, None, True) == PLAIN_REQUEST


def test_scan_request_content_length_keeps_it_plain() -> None:
    fields = scan_request(head("POST /u HTTP/1.1", "Host: x", "content-length:  1234 "))
    assert fields == RequestFields(1234, False, None, None, None, True)


def test_scan_request_chunked() -> None:
    fields = scan_request(head("POST /u HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"))
    assert fields.chunked is True
    assert fields.length == 0
    assert fields.plain is False


def test_scan_request_upgrade_and_connection() -> None:
    fields = scan_request(
        head("GET /ws HTTP/1.1", "Host: x", "Connection: Upgrade, Keep-Alive", "Upgrade: websocket")
    )
    assert fields.upgrade == b"websocket"
    assert fields.connection == b"upgrade, keep-alive"
    assert fields.plain is False


def test_scan_request_forwarded_for_values_are_merged() -> None:
    fields = scan_request(
        head(
            "GET / HTTP/1.1",
            "Host: x",
            "X-Forwarded-For: 203.0.113.9, 198.51.100.2",
            "x-forwarded-for:  192.0.2.1 ",
        )
    )
    assert fields.forwarded_for == b"203.0.113.9, 198.51.100.2, 192.0.2.1"
    assert fields.plain is False


@pytest.mark.parametrize(
    "field",
    [
        "Connection-Id: 1",
        "Tea: 1",
        "Upgrade-Insecure-Requests: 1",
        "Keep-Alive-Extra: x",
        "X-Forwarded-For-Extra: 1.2.3.4",
        "X-Forwarded-Protocol: https",
        "X-Forwarded-Host: a.test",
        "Content-Length-Hint: 5",
    ],
)
def test_scan_request_a_name_that_only_starts_with_a_special_name_is_plain(field: str) -> None:
    raw = head("GET / HTTP/1.1", "Host: x", field)
    assert scan_request(raw) is PLAIN_REQUEST, field
    # A rewrite made for another reason keeps it.
    raw = head("GET / HTTP/1.0", "Host: x", field)
    assert field.encode() in lines(rewrite_request(raw, scan_request(raw), [])), field


def test_rewrite_request_drops_hop_by_hop_named_and_forwarded_fields() -> None:
    raw = head(
        "GET /a?b HTTP/1.1",
        "Host: x",
        "Connection: keep-alive, X-Secret",
        "X-Secret: 1",
        "X-Forwarded-For: 203.0.113.9",
        "X-Forwarded-Proto: https",
        "Keep-Alive: timeout=5",
        "Proxy-Connection: keep-alive",
        "TE: trailers",
        "Trailer: X-Sum",
        "Proxy-Authorization: Basic eA==",
        "Cookie: a=1",
        "X-Kept: 1",
        "Cookie: b=2",
    )
    fields = scan_request(raw)
    assert fields.forwarded_for == b"203.0.113.9"
    extra = [b"X-Forwarded-For: 203.0.113.9, 127.0.0.1", b"X-Forwarded-Proto: http"]
    assert lines(rewrite_request(raw, fields, extra)) == [
        b"GET /a?b HTTP/1.1",
        b"Host: x",
        b"Cookie: a=1",
        b"X-Kept: 1",
        b"Cookie: b=2",
        b"X-Forwarded-For: 203.0.113.9, 127.0.0.1",
        b"X-Forwarded-Proto: http",
    ]


def test_rewrite_request_http_1_0_becomes_1_1() -> None:
    raw = head("GET /a?b HTTP/1.0")
    out = rewrite_request(raw, scan_request(raw), [b"X-Forwarded-For: 127.0.0.1"])
    assert out == b"GET /a?b HTTP/1.1\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize(
    "target",
    [
        "/a?v=HTTP/1.0",
        "/HTTP/1.0/x?q=1%20HTTP/1.1",
        "http://origin.test/p?x=y",
        "*",
    ],
)
def test_rewrite_request_keeps_the_whole_target(target: str) -> None:
    raw = head(f"OPTIONS {target} HTTP/1.0", "Host: x")
    out = rewrite_request(raw, scan_request(raw), [])
    assert lines(out)[0] == f"OPTIONS {target} HTTP/1.1".encode()
    assert request_target(raw) == target.encode()


def test_rewrite_request_target_with_space_http_inside() -> None:
    # llhttp refuses a space in the target, so this cannot reach the proxy; the functions
    # still take the version from the LAST space, keeping everything before it.
    raw = b"GET /a?q= HTTP/1.0 HTTP/1.0\r\nHost: x\r\n\r\n"
    out = rewrite_request(raw, scan_request(raw), [])
    assert lines(out)[0] == b"GET /a?q= HTTP/1.0 HTTP/1.1"
    assert request_target(raw) == b"/a?q= HTTP/1.0"


def test_rewrite_request_keeps_upgrade_token_but_drops_upgrade_field() -> None:
    raw = head("GET /ws HTTP/1.1", "Host: x", "Connection: Upgrade", "Upgrade: websocket")
    out = rewrite_request(raw, scan_request(raw), [b"Connection: upgrade", b"Upgrade: websocket"])
    assert lines(out) == [
        b"GET /ws HTTP/1.1",
        b"Host: x",
        b"Connection: upgrade",
        b"Upgrade: websocket",
    ]


# --- header_value / all_values / request_target ------------------------------------------


def test_header_value_first_match_any_case_stripped() -> None:
    raw = head("GET / HTTP/1.1", "X-Host: wrong", "HOST:  a.test:8080 ", "Host: second")
    assert header_value(raw, b"host") == b"a.test:8080"


def test_header_value_absent() -> None:
    raw = head("GET /?host: x HTTP/1.1", "X-Host: y", "Hostname: z")
    assert header_value(raw, b"host") is None


def test_header_value_empty() -> None:
    assert header_value(head("GET / HTTP/1.1", "X-E:", "Y: 1"), b"x-e") == b""


def test_header_value_of_the_last_field() -> None:
    assert header_value(head("GET / HTTP/1.1", "A: 1", "Cookie: c=3"), b"cookie") == b"c=3"


def test_all_values_joins_cookie_lines() -> None:
    raw = head("GET / HTTP/1.1", "Cookie: a=1; b=2", "X-Cookie: no", "cookie:  c=3 ", "Host: x")
    assert all_values(raw, b"cookie") == b"a=1; b=2; c=3"
    assert all_values(raw, b"set-cookie") is None


def test_all_values_single() -> None:
    assert all_values(head("GET / HTTP/1.1", "Cookie: a=1"), b"cookie") == b"a=1"


@pytest.mark.parametrize(
    ("first", "target"),
    [
        ("GET / HTTP/1.1", "/"),
        ("GET /a/b?c=d&e HTTP/1.1", "/a/b?c=d&e"),
        ("CONNECT a.test:443 HTTP/1.1", "a.test:443"),
        ("GET http://a.test/x HTTP/1.0", "http://a.test/x"),
    ],
)
def test_request_target(first: str, target: str) -> None:
    assert request_target(head(first, "Host: a.test")) == target.encode()
