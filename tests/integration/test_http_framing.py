"""Where messages start and end in the byte stream: the raw-head fast path of the proxy.

The proxy takes request and response heads as raw bytes from what it read, so it must
know where each message starts even when heads are split across reads or several
requests arrive in one read. These tests send bytes with a raw socket in exactly those
shapes, through a real ``ninelives run``, to real backends: the aiohttp backend of
tests/support/backend.py, and for response shapes aiohttp would never produce, a tiny raw
asyncio server run in a thread of the test (:class:`RawBackend`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.node import (
    Backend,
    Harness,
    Node,
    RawConn,
    Response,
    one_pool_config,
    request_bytes,
)

MAX_HEAD = 64 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def aiohttp_node(harness: Harness) -> tuple[Node, Backend]:
    (a1,) = harness.backends("a1")
    return harness.node(one_pool_config([a1])), a1


def echoed(echo: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name.lower()]


def nodelay(conn: RawConn) -> RawConn:
    """Every send leaves as its own segment (no Nagle coalescing of small sends)."""
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def assert_echo(response: Response, path: str, body: bytes = b"", method: str = "GET") -> None:
    assert response.status == 200, response
    echo = response.json()
    assert (echo["method"], echo["path"]) == (method, path), echo
    assert (echo["body_length"], echo["body_sha256"]) == (len(body), sha(body)), echo


def assert_closed_with_nothing_more(conn: RawConn) -> None:
    """The proxy closes the connection (within 5 s) and sends no further byte."""
    try:
        rest = conn.buf + conn.read_until_close(timeout=5)
    except TimeoutError:
        raise AssertionError(
            f"the proxy kept the connection open for 5 s (received so far {conn.buf[:300]!r})"
        ) from None
    assert rest == b"", f"after the last response the proxy sent {rest[:300]!r}"


# --- a raw backend -------------------------------------------------------------------------

Script = list[bytes]  # what the backend writes for one request, piece by piece


class RawBackend:
    """An HTTP/1.1 server that writes each response in given pieces, pausing in between.

    ``scripts`` maps a request target to the pieces of its response. Requests must have
    no body. Every request head received is kept in ``heads``. The server runs an asyncio
    loop in a thread; ``with RawBackend(...)`` starts it and stops it.
    """

    def __init__(self, scripts: dict[str, Script], pause: float = 0.005) -> None:
        self.scripts = scripts
        self.pause = pause  # a slow server, not a wait of the test
        self.heads: list[bytes] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by __enter__/__exit__
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # a health check, or the proxy closed a pooled connection
                self.heads.append(head)
                target = head.split(b" ", 2)[1].decode()
                script = self.scripts.get(
                    target, [b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"]
                )
                for i, piece in enumerate(script):
                    if i:
                        await asyncio.sleep(self.pause)
                    writer.write(piece)
                    await writer.drain()
        finally:
            writer.close()

    def __enter__(self) -> RawBackend:
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None or not self.port:
            raise AssertionError(f"raw backend did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "raw backend thread did not stop"


def raw_node(harness: Harness, backend: RawBackend) -> Node:
    config = {
        "listeners": [{"name": "web", "bind": "127.0.0.1:0", "protocol": "http", "pool": "raw"}],
        "pools": {
            "raw": {
                "health": {"tcp": {}, "interval": "1s", "timeout": "500ms"},
                "servers": [{"name": "r1", "address": backend.address}],
            }
        },
    }
    return harness.node(config)


@pytest.fixture
def raw_backend(request: pytest.FixtureRequest) -> Iterator[Callable[..., RawBackend]]:
    started: list[RawBackend] = []

    def start(scripts: dict[str, Script]) -> RawBackend:
        backend = RawBackend(scripts).__enter__()
        started.append(backend)
        return backend

    try:
        yield start
    finally:
        for backend in started:
            backend.__exit__()


# --- request heads split across reads ----------------------------------------------------


def test_request_head_sent_one_byte_at_a_time(harness: Harness) -> None:
    node, _ = aiohttp_node(harness)
    with nodelay(RawConn(node.addr())) as conn:
        for byte in request_bytes("GET", "/echo?one=byte", {"X-Long": "v" * 200}):
            conn.sock.sendall(bytes([byte]))
        response = conn.read_response()
        assert_echo(response, "/echo?one=byte")
        assert echoed(response.json(), "X-Long") == ["v" * 200]

        # A POST, head and body byte by byte, then a plain GET: the stream stays in step.
        body = b"0123456789abcdef"
        for byte in request_bytes("POST", "/echo?second", body=body):
            conn.sock.sendall(bytes([byte]))
        assert_echo(conn.read_response(), "/echo?second", body, "POST")
        conn.send(request_bytes("GET", "/echo?third"))
        assert_echo(conn.read_response(), "/echo?third")


def test_pipelined_requests_in_one_send(harness: Harness) -> None:
    node, _ = aiohttp_node(harness)
    body = b"pipelined body \x00\xff" * 50
    with RawConn(node.addr()) as conn:
        conn.send(
            request_bytes("GET", "/echo?i=1")
            + request_bytes("POST", "/echo?i=2", body=body)
            + request_bytes("GET", "/echo?i=3", {"X-Third": "3"})
        )
        first, second, third = (conn.read_response() for _ in range(3))
        assert_echo(first, "/echo?i=1")
        assert_echo(second, "/echo?i=2", body, "POST")
        assert_echo(third, "/echo?i=3")
        assert echoed(third.json(), "X-Third") == ["3"]
        # Each head went to the server as its own: nothing of one leaked into another.
        assert echoed(first.json(), "Content-Length") == []
        assert echoed(second.json(), "Content-Length") == [str(len(body))]
        conn.send(request_bytes("GET", "/echo?after"))
        assert_echo(conn.read_response(), "/echo?after")


def test_pipelined_third_head_cut_while_the_second_waits(harness: Harness) -> None:
    # The second request waits (reading paused) while the third's head is incomplete.
    node, _ = aiohttp_node(harness)
    third = request_bytes("POST", "/echo?i=3", body=b"third")
    with nodelay(RawConn(node.addr())) as conn:
        conn.send(
            request_bytes("GET", "/echo?i=1")
            + request_bytes("POST", "/echo?i=2", body=b"second")
            + third[:25]
        )
        assert_echo(conn.read_response(), "/echo?i=1")
        assert_echo(conn.read_response(), "/echo?i=2", b"second", "POST")
        conn.send(third[25:])
        assert_echo(conn.read_response(), "/echo?i=3", b"third", "POST")


@pytest.mark.parametrize("cut", [1, 3, 0.5, -3, -2, -1])
def test_pipelined_second_head_cut_across_two_sends(harness: Harness, cut: float) -> None:
    node, _ = aiohttp_node(harness)
    second = request_bytes("GET", "/echo?i=2", {"X-Second": "yes"})
    at = int(len(second) * cut) if isinstance(cut, float) else cut % len(second)
    with nodelay(RawConn(node.addr())) as conn:
        conn.send(request_bytes("GET", "/echo?i=1") + second[:at])
        # The first answer proves the proxy read the first send on its own.
        assert_echo(conn.read_response(), "/echo?i=1")
        conn.send(second[at:])
        response = conn.read_response()
        assert_echo(response, "/echo?i=2")
        assert echoed(response.json(), "X-Second") == ["yes"]
        conn.send(request_bytes("GET", "/echo?i=3"))
        assert_echo(conn.read_response(), "/echo?i=3")


def test_pipelined_head_cut_after_a_content_length_body(harness: Harness) -> None:
    node, _ = aiohttp_node(harness)
    body = b"b" * 1000
    first = request_bytes("POST", "/echo?i=1", body=body)
    second = request_bytes("POST", "/echo?i=2", body=b"xyz")
    head_len = first.index(b"\r\n\r\n") + 4
    with nodelay(RawConn(node.addr())) as conn:
        # Head and half the body; then the rest of the body and half the next head; then
        # the rest. The next head starts Content-Length bytes after the first one.
        conn.send(first[: head_len + 500])
        conn.send(first[head_len + 500 :] + second[:20])
        assert_echo(conn.read_response(), "/echo?i=1", body, "POST")
        conn.send(second[20:])
        assert_echo(conn.read_response(), "/echo?i=2", b"xyz", "POST")


# --- chunked request bodies ---------------------------------------------------------------

CHUNKED_BODY = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


def chunked_upload() -> bytes:
    return request_bytes("POST", "/upload", {"Transfer-Encoding": "chunked"}) + CHUNKED_BODY


def assert_upload(response: Response) -> None:
    assert response.status == 200, response
    assert response.json() == {"length": 11, "sha256": sha(b"hello world")}


def test_chunked_post_then_a_request_in_a_later_send(harness: Harness) -> None:
    node, _ = aiohttp_node(harness)
    with RawConn(node.addr()) as conn:
        conn.send(chunked_upload())
        assert_upload(conn.read_response())
        conn.send(request_bytes("GET", "/echo?after=chunked"))
        assert_echo(conn.read_response(), "/echo?after=chunked")
        # Once more, with the next head itself split after the resynchronisation.
        conn.send(chunked_upload())
        assert_upload(conn.read_response())
        nxt = request_bytes("POST", "/echo?again", body=b"12345")
        conn.send(nxt[:10])
        conn.send(nxt[10:])
        assert_echo(conn.read_response(), "/echo?again", b"12345", "POST")


@pytest.mark.parametrize("whole", [True, False], ids=["whole-get", "get-head-begun"])
def test_request_pipelined_behind_chunked_in_the_same_send_is_left_and_closed(
    harness: Harness, whole: bool
) -> None:
    # Documented behaviour (src/ninelives/http/downstream.py): the start of a request that
    # follows a chunked body in the same read is unknown; the proxy answers the chunked
    # request, does not answer the next one, and closes (RFC 9112 9.3.2).
    node, a1 = aiohttp_node(harness)
    get = request_bytes("GET", "/echo?unanswered")
    with nodelay(RawConn(node.addr())) as conn:
        conn.send(chunked_upload() + (get if whole else get[:12]))
        response = conn.read_response()
        assert_upload(response)
        if whole:
            # The proxy knew it would close before the response came: it says so.
            assert (response.header("Connection") or "").lower() == "close", response
        else:
            # Only the rest of the GET's head tells the proxy it was pipelined; then it
            # must close at once (nothing else is in flight).
            with contextlib.suppress(OSError):
                conn.send(get[12:])
        assert_closed_with_nothing_more(conn)
    assert "/echo" not in a1.stats()["requests"], "the unanswered request reached the server"
    with RawConn(node.addr()) as conn:
        conn.send(request_bytes("GET", "/echo?new"))
        assert_echo(conn.read_response(), "/echo?new")


# --- empty lines before a request (RFC 9112 2.2) ------------------------------------------


def test_empty_line_before_the_first_request(harness: Harness) -> None:
    # llhttp skips CRLFs before a request-line, as RFC 9112 2.2 asks of a server; the
    # head the proxy takes must then start at the request-line, not at the CRLF.
    node, _ = aiohttp_node(harness)
    with RawConn(node.addr(), timeout=5) as conn:
        conn.send(b"\r\n" + request_bytes("GET", "/echo?leading=crlf"))
        assert_echo(conn.read_response(), "/echo?leading=crlf")


def test_empty_line_after_a_body_before_the_next_request(harness: Harness) -> None:
    # Old clients send a CRLF after a POST body; RFC 9112 2.2: the server SHOULD ignore it.
    node, _ = aiohttp_node(harness)
    with RawConn(node.addr(), timeout=5) as conn:
        conn.send(
            request_bytes("POST", "/echo?i=1", body=b"abc")
            + b"\r\n"
            + request_bytes("GET", "/echo?i=2")
        )
        assert_echo(conn.read_response(), "/echo?i=1", b"abc", "POST")
        assert_echo(conn.read_response(), "/echo?i=2")


# --- HTTP/1.0 -----------------------------------------------------------------------------


def test_http_1_0_request_without_host(harness: Harness) -> None:
    node, _ = aiohttp_node(harness)
    with RawConn(node.addr()) as conn:
        conn.send(b"GET /echo?v=10 HTTP/1.0\r\nAccept: */*\r\n\r\n")
        response = conn.read_response()
        assert_echo(response, "/echo?v=10")
        echo = response.json()
        assert echo["version"] == "1.1", "the proxy speaks HTTP/1.1 to servers"
        assert echoed(echo, "X-Forwarded-For") == ["127.0.0.1"]
        assert echoed(echo, "X-Forwarded-Proto") == ["http"]
        assert echoed(echo, "Accept") == ["*/*"]
        assert (response.header("Connection") or "").lower() == "close", response
        assert_closed_with_nothing_more(conn)


def test_http_1_0_keep_alive_request(harness: Harness) -> None:
    node, _ = aiohttp_node(harness)
    with RawConn(node.addr()) as conn:
        for i in range(2):
            head = f"GET /echo?k={i} HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n"
            conn.send(head.encode())
            response = conn.read_response()
            assert_echo(response, f"/echo?k={i}")
            assert response.json()["version"] == "1.1"
            assert (response.header("Connection") or "").lower() == "keep-alive", response
            assert response.header("Content-Length") is not None, response


# --- head size limit ----------------------------------------------------------------------


def huge_request(size: int) -> bytes:
    return request_bytes("GET", "/echo?huge", {"X-Huge": "h" * size})


def test_request_head_over_64_kib_arriving_in_pieces_gets_431(harness: Harness) -> None:
    node, _ = aiohttp_node(harness)
    with nodelay(RawConn(node.addr())) as conn:
        # No end of head yet: what the proxy has is an incomplete head over the limit.
        start = huge_request(80 * 1024)[: 70 * 1024]
        for at in range(0, len(start), 8 * 1024):
            conn.send(start[at : at + 8 * 1024])
        response = conn.read_response()
        assert response.status == 431, response
        assert_closed_with_nothing_more(conn)
    with RawConn(node.addr()) as conn:
        conn.send(request_bytes("GET", "/echo?still"))
        assert_echo(conn.read_response(), "/echo?still")


def test_complete_request_head_over_64_kib_in_one_send_gets_431(harness: Harness) -> None:
    node, a1 = aiohttp_node(harness)
    with RawConn(node.addr()) as conn:
        conn.send(huge_request(70 * 1024))
        response = conn.read_response()
        assert response.status == 431, response
        assert_closed_with_nothing_more(conn)
    assert "/echo" not in a1.stats()["requests"], "the oversized head was forwarded"
    with RawConn(node.addr()) as conn:
        conn.send(request_bytes("GET", "/echo?still"))
        assert_echo(conn.read_response(), "/echo?still")


# --- response heads (raw backend) -----------------------------------------------------------

SPLIT_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-Piece: abc\r\n\r\n"
)
# As long as SPLIT_HEAD (the same cuts apply), framed by chunks.
CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
    b"X-Piece: abc\r\n\r\n"
)
CHUNKED_BODY_HELLO = b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"


def three_pieces(head: bytes, cuts: tuple[int, int]) -> list[bytes]:
    a, b = cuts
    return [head[:a], head[a:b], head[b:]]


@pytest.mark.parametrize(
    "cuts",
    [(5, 30), (17, 44), (len(SPLIT_HEAD) - 3, len(SPLIT_HEAD) - 1)],
    ids=["mid-lines", "at-line-ends", "inside-final-crlf"],
)
def test_response_head_split_across_reads(
    harness: Harness, raw_backend: Callable[..., RawBackend], cuts: tuple[int, int]
) -> None:
    backend = raw_backend(
        {
            "/split": [*three_pieces(SPLIT_HEAD, cuts), b"hello"],
            "/split-body": [
                *three_pieces(SPLIT_HEAD, cuts)[:2],
                SPLIT_HEAD[cuts[1] :] + b"he",
                b"llo",
            ],
            # Chunked from the server: a head the proxy rewrites, taken from three reads.
            "/split-chunked": [*three_pieces(CHUNKED_HEAD, cuts), CHUNKED_BODY_HELLO],
        }
    )
    node = raw_node(harness, backend)
    with RawConn(node.addr()) as conn:
        for path in ("/split", "/split-body", "/split-chunked", "/split"):
            conn.send(request_bytes("GET", path))
            response = conn.read_response()
            assert response.status == 200, (path, response)
            if path == "/split-chunked":
                assert [k for k, _ in response.headers] == [
                    "Content-Type",
                    "X-Piece",
                    "Transfer-Encoding",
                ], response
                assert response.header("Transfer-Encoding") == "chunked", response
            else:
                assert response.headers == [
                    ("Content-Type", "text/plain"),
                    ("Content-Length", "5"),
                    ("X-Piece", "abc"),
                ], (path, response)
            assert response.body == b"hello", (path, response)
    assert len(backend.heads) == 4


FINAL = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: 1\r\n\r\nok"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"


def test_interim_responses_then_the_final_one(
    harness: Harness, raw_backend: Callable[..., RawBackend]
) -> None:
    backend = raw_backend(
        {
            "/same-write": [CONTINUE + FINAL],
            "/separate-writes": [CONTINUE, FINAL],
            "/split-writes": [CONTINUE[:10], CONTINUE[10:] + FINAL[:20], FINAL[20:]],
            "/two-interims": [CONTINUE + HINTS[:30], HINTS[30:] + FINAL],
            "/no-interim": [FINAL],
        }
    )
    node = raw_node(harness, backend)
    expected = {
        "/same-write": [100],
        "/separate-writes": [100],
        "/split-writes": [100],
        "/two-interims": [100, 103],
    }
    with RawConn(node.addr()) as conn:
        for path, interims in [*expected.items(), ("/same-write", [100])]:
            conn.send(request_bytes("GET", path))
            for status in interims:
                interim = conn.read_response()
                assert interim.status == status, (path, interim)
            if 103 in interims:
                assert interim.header("Link") == "</a.css>; rel=preload", interim
            final = conn.read_response()
            assert final.status == 200, (path, final)
            assert final.header("X-Final") == "1", (path, final)
            assert final.body == b"ok", (path, final)
        # Nothing stray after the last one: the next answer is exactly the next response.
        conn.send(request_bytes("GET", "/no-interim"))
        final = conn.read_response()
        assert (final.status, final.body) == (200, b"ok"), final
        assert conn.buf == b"", f"extra bytes after the last response: {conn.buf!r}"


def test_interim_response_is_not_relayed_to_an_http_1_0_client(
    harness: Harness, raw_backend: Callable[..., RawBackend]
) -> None:
    # RFC 9110 15.2: a server MUST NOT send a 1xx response to an HTTP/1.0 client.
    backend = raw_backend(
        {"/same-write": [CONTINUE + FINAL], "/separate-writes": [CONTINUE, FINAL]}
    )
    node = raw_node(harness, backend)
    for path in ("/same-write", "/separate-writes"):
        with RawConn(node.addr()) as conn:
            conn.send(f"GET {path} HTTP/1.0\r\nHost: a.test\r\n\r\n".encode())
            response = conn.read_response()
            assert response.status == 200, (path, response)
            assert response.body == b"ok", (path, response)
            assert_closed_with_nothing_more(conn)


LOOKALIKES = [
    ("Connection-Id", "7"),
    ("Keep-Alive-Extra", "x"),
    ("Tea", "1"),
    ("Upgrade-Insecure-Requests", "1"),
    ("Trailer-Info", "t"),
    ("Transfer-Encoding-Note", "chunked"),
    ("Proxy-Connection-Hint", "p"),
]
LOOKALIKE_LINES = b"".join(f"{k}: {v}\r\n".encode() for k, v in LOOKALIKES)


def test_response_fields_that_look_hop_by_hop_reach_the_client(
    harness: Harness, raw_backend: Callable[..., RawBackend]
) -> None:
    backend = raw_backend(
        {
            # Plain: the raw head goes through as it came.
            "/plain": [b"HTTP/1.1 200 OK\r\n" + LOOKALIKE_LINES + b"Content-Length: 2\r\n\r\nok"],
            # Rewritten (Connection names a field to drop): the look-alikes stay.
            "/rewritten": [
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n"
                + LOOKALIKE_LINES
                + b"Content-Length: 2\r\n\r\nok"
            ],
            # Rewritten (chunked from the server, chunked again for the client).
            "/chunked": [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                + LOOKALIKE_LINES
                + b"\r\n2\r\nok\r\n0\r\n\r\n"
            ],
            # Rewritten (HTTP/1.0 from the server).
            "/http10": [
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                + LOOKALIKE_LINES
                + b"Content-Length: 2\r\n\r\nok"
            ],
        }
    )
    node = raw_node(harness, backend)
    with RawConn(node.addr()) as conn:
        for path in ("/plain", "/rewritten", "/chunked", "/http10"):
            conn.send(request_bytes("GET", path))
            response = conn.read_response()
            assert response.status == 200, (path, response)
            assert response.body == b"ok", (path, response)
            for name, value in LOOKALIKES:
                assert response.header_all(name) == [value], (path, name, response)
            assert response.header("X-Drop") is None, (path, response)


def test_request_fields_that_look_hop_by_hop_reach_the_server(
    harness: Harness, raw_backend: Callable[..., RawBackend]
) -> None:
    ok = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
    backend = raw_backend({"/plain": ok, "/rewritten": ok})
    node = raw_node(harness, backend)
    fields = dict(LOOKALIKES)
    with RawConn(node.addr()) as conn:
        conn.send(request_bytes("GET", "/plain", fields))
        assert conn.read_response().body == b"ok"
        conn.send(
            request_bytes(
                "GET", "/rewritten", {**fields, "Connection": "keep-alive, X-D", "X-D": "1"}
            )
        )
        assert conn.read_response().body == b"ok"
    assert len(backend.heads) == 2
    for head in backend.heads:
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].endswith(" HTTP/1.1"), head
        for name, value in LOOKALIKES:
            assert f"{name}: {value}" in lines, (name, head)
        assert not any(line.lower().startswith("x-d:") for line in lines), head
        assert lines.count("X-Forwarded-For: 127.0.0.1") == 1, head
