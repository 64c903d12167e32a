"""The HTTP/1.1 proxy itself: connections, headers, bodies, streaming, upgrades, routes.

A real node in front of real backends (tests/support/backend.py). ``/echo`` shows what
the backend received; ``X-Conn`` names the upstream connection that carried a request.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.client
import os
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp

from tests.support.backend import download_pieces, download_sha256
from tests.support.node import (
    Harness,
    HttpClient,
    Node,
    RawConn,
    Response,
    RssSampler,
    http_request,
    one_pool_config,
    refuses_connections,
    request_bytes,
    wait_until,
)

GIB = 1 << 30
MIB = 1 << 20
# How much more memory the proxy may use while streaming than when idle.
RSS_HEADROOM_KIB = 100 * 1024

expected_sha256 = functools.lru_cache(maxsize=4)(download_sha256)


def single_backend_node(harness: Harness, pool: dict[str, Any] | None = None) -> Node:
    (a1,) = harness.backends("a1")
    return harness.node(one_pool_config([a1], pool))


def header_names(echo: dict[str, Any]) -> set[str]:
    return {name.lower() for name, _ in echo["headers"]}


def echoed_header(echo: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name.lower()]


# --- connections -----------------------------------------------------------------------


def test_keep_alive_downstream_and_pooled_upstream(harness: Harness) -> None:
    node = single_backend_node(harness)
    upstream: set[str | None] = set()
    with HttpClient(node.addr()) as client:
        for _ in range(50):
            response = client.request("GET", "/echo")
            assert response.status == 200
            upstream.add(response.header("X-Conn"))
        assert client.connects == 1, "the proxy closed a keep-alive client connection"
    assert len(upstream) <= 2, f"50 requests used {len(upstream)} upstream connections"

    # Twenty client connections one after another still reuse pooled upstream connections.
    upstream = {http_request(node.addr(), "GET", "/echo").header("X-Conn") for _ in range(20)}
    assert len(upstream) <= 2, f"20 client connections used {len(upstream)} upstream ones"


def test_connection_close_from_client_is_honoured(harness: Harness) -> None:
    node = single_backend_node(harness)
    with RawConn(node.addr()) as conn:
        conn.send(request_bytes("GET", "/", {"Connection": "close"}))
        response = conn.read_response()
        assert response.status == 200
        assert response.body == b"a1"
        assert conn.is_closed_by_peer(timeout=5), "proxy kept the connection after close"


def test_connection_close_from_server_does_not_close_the_client(harness: Harness) -> None:
    node = single_backend_node(harness)
    with HttpClient(node.addr()) as client:
        closing = client.request("GET", "/close")
        assert closing.status == 200
        assert closing.body == b"closing"
        after = client.request("GET", "/echo")
        assert after.status == 200
        # The server closed that upstream connection; the next request needs another one.
        assert after.header("X-Conn") != closing.header("X-Conn")
        assert client.connects == 1, "Connection: close is hop-by-hop, not for the client"


def test_pipelined_requests_are_answered_in_order(harness: Harness) -> None:
    node = single_backend_node(harness)
    with RawConn(node.addr()) as conn:
        conn.send(
            request_bytes("GET", "/echo?i=1")
            + request_bytes("POST", "/echo?i=2", body=b"hello")
            + request_bytes("GET", "/echo?i=3")
        )
        answers = [conn.read_response() for _ in range(3)]
        assert [a.status for a in answers] == [200, 200, 200]
        echoes = [a.json() for a in answers]
        assert [e["path"] for e in echoes] == ["/echo?i=1", "/echo?i=2", "/echo?i=3"]
        assert [e["body_length"] for e in echoes] == [0, 5, 0]
        # And the connection still works afterwards.
        conn.send(request_bytes("GET", "/"))
        assert conn.read_response().body == b"a1"


def test_sigterm_finishes_in_flight_requests_and_exits_zero(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    node = harness.node(one_pool_config([a1]))
    addr = node.addr()
    result: list[bytes | BaseException] = []

    def slow_request() -> None:
        try:
            response = http_request(addr, "GET", "/slow?delay=1.5", timeout=15)
            result.append(response.body if response.status == 200 else Exception(response))
        except Exception as exc:
            result.append(exc)

    worker = threading.Thread(target=slow_request)
    worker.start()
    wait_until(lambda: a1.stats()["requests"].get("/slow", 0) >= 1, message="slow in flight")
    os.kill(node.pid, signal.SIGTERM)

    wait_until(
        lambda: refuses_connections(addr), timeout=5, message="listener closed after SIGTERM"
    )
    worker.join(15)
    assert result == [b"slow"], result
    assert node.popen.wait(15) == 0


# --- headers ---------------------------------------------------------------------------


def test_hop_by_hop_headers_are_removed_end_to_end_ones_kept(harness: Harness) -> None:
    node = single_backend_node(harness)
    response = http_request(
        node.addr(),
        "GET",
        "/echo",
        {
            "Host": "example.test",
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Connection": "keep-alive",
            "TE": "trailers",
            "Trailer": "X-Checksum",
            "Upgrade": "not-upgrading",
            "X-Custom": "kept",
        },
    )
    assert response.status == 200
    echo = response.json()
    names = header_names(echo)
    for gone in ("x-secret", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
        assert gone not in names, (gone, echo["headers"])
    for value in echoed_header(echo, "Connection"):
        assert "x-secret" not in value.lower(), echo["headers"]
    assert echoed_header(echo, "X-Custom") == ["kept"]
    assert echoed_header(echo, "Host") == ["example.test"]


def test_x_forwarded_for_is_added_and_appended(harness: Harness) -> None:
    node = single_backend_node(harness)
    echo = http_request(node.addr(), "GET", "/echo").json()
    assert echoed_header(echo, "X-Forwarded-For") == ["127.0.0.1"]
    assert echoed_header(echo, "X-Forwarded-Proto") == ["http"]

    echo = http_request(node.addr(), "GET", "/echo", {"X-Forwarded-For": "203.0.113.9"}).json()
    assert echoed_header(echo, "X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]

    echo = http_request(
        node.addr(), "GET", "/echo", {"X-Forwarded-For": "203.0.113.9"}, source="127.0.0.7"
    ).json()
    assert echoed_header(echo, "X-Forwarded-For") == ["203.0.113.9, 127.0.0.7"]


# --- responses without a body ----------------------------------------------------------


def test_head_has_no_body_and_the_connection_stays_usable(harness: Harness) -> None:
    node = single_backend_node(harness)
    with RawConn(node.addr()) as conn:
        conn.send(request_bytes("HEAD", "/"))
        head = conn.read_response(head=True)
        assert head.status == 200
        assert head.header("Content-Length") == "2"
        conn.send(request_bytes("GET", "/"))
        after = conn.read_response()
        assert after.status == 200
        assert after.body == b"a1"


def test_204_and_304_have_no_body(harness: Harness) -> None:
    node = single_backend_node(harness)
    with RawConn(node.addr()) as conn:
        for code in (204, 304):
            conn.send(request_bytes("GET", f"/status/{code}"))
            response = conn.read_response()
            assert response.status == code
            assert response.header("Transfer-Encoding") is None
        conn.send(request_bytes("GET", "/"))
        after = conn.read_response()
        assert (after.status, after.body) == (200, b"a1")


def test_expect_100_continue_is_passed_through(harness: Harness) -> None:
    node = single_backend_node(harness)
    with RawConn(node.addr(), timeout=5) as conn:
        conn.send(
            request_bytes("POST", "/upload", {"Content-Length": "5", "Expect": "100-continue"})
        )
        interim = conn.read_response()
        assert interim.status == 100
        conn.send(b"hello")
        final = conn.read_response()
        assert final.status == 200
        assert final.json() == {"length": 5, "sha256": hashlib.sha256(b"hello").hexdigest()}


# --- bodies ----------------------------------------------------------------------------


def test_chunked_upload_arrives_intact(harness: Harness) -> None:
    node = single_backend_node(harness)
    pieces = [os.urandom(n) for n in (1, 17, 4096, 65536, 100_000, 3, 1 << 20)] * 3
    expected = hashlib.sha256(b"".join(pieces)).hexdigest()
    with HttpClient(node.addr()) as client:
        response = client.request("POST", "/upload", body=iter(pieces), encode_chunked=True)
        assert response.status == 200
        assert response.json() == {"length": sum(map(len, pieces)), "sha256": expected}

    # Chunk extensions and a trailer section are legal and must not corrupt the body.
    with RawConn(node.addr()) as conn:
        body = b"5;name=value\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: 1\r\n\r\n"
        conn.send(request_bytes("POST", "/upload", {"Transfer-Encoding": "chunked"}) + body)
        response = conn.read_response()
        assert response.status == 200
        assert response.json()["sha256"] == hashlib.sha256(b"hello!").hexdigest()


def test_chunked_and_content_length_downloads_arrive_intact(harness: Harness) -> None:
    node = single_backend_node(harness)
    size = 3 * MIB + 12345
    chunked = http_request(node.addr(), "GET", f"/download?size={size}")
    assert chunked.status == 200
    assert len(chunked.body) == size
    assert hashlib.sha256(chunked.body).hexdigest() == expected_sha256(size)

    with_length = http_request(node.addr(), "GET", f"/download?size={size}&cl=1")
    assert with_length.status == 200
    assert with_length.header("Content-Length") == str(size)
    assert hashlib.sha256(with_length.body).hexdigest() == expected_sha256(size)


def _warm_rss(node: Node) -> int:
    """The proxy's RSS after a first small transfer (imports and buffers warmed up)."""
    response = http_request(node.addr(), "GET", f"/download?size={4 * MIB}")
    assert response.status == 200
    return node.rss_kib()


def test_one_gib_upload_streams_in_bounded_memory(harness: Harness) -> None:
    node = single_backend_node(harness)
    idle = _warm_rss(node)
    sent = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for piece in download_pieces(GIB):
            sent.update(piece)
            yield piece

    with RssSampler(node.pid) as rss, HttpClient(node.addr(), timeout=60) as client:
        response = client.request("POST", "/upload", {"Content-Length": str(GIB)}, body=body())
    assert response.status == 200
    assert response.json() == {"length": GIB, "sha256": sent.hexdigest()}
    assert rss.samples > 5
    assert rss.peak_kib - idle < RSS_HEADROOM_KIB, (idle, rss.peak_kib)


def test_one_gib_download_streams_in_bounded_memory(harness: Harness) -> None:
    node = single_backend_node(harness)
    idle = _warm_rss(node)
    received = hashlib.sha256()
    length = 0
    conn = http.client.HTTPConnection(*node.addr(), timeout=60)
    try:
        with RssSampler(node.pid) as rss:
            conn.request("GET", f"/download?size={GIB}")
            response = conn.getresponse()
            assert response.status == 200
            while piece := response.read(MIB):
                received.update(piece)
                length += len(piece)
    finally:
        conn.close()
    assert length == GIB
    assert received.hexdigest() == expected_sha256(GIB)
    assert rss.samples > 5
    assert rss.peak_kib - idle < RSS_HEADROOM_KIB, (idle, rss.peak_kib)


def test_slow_reader_gets_backpressure_not_buffering(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    node = harness.node(one_pool_config([a1]))
    idle = _warm_rss(node)
    size = 200 * MIB
    conn = http.client.HTTPConnection(*node.addr(), timeout=30)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        conn.request("GET", f"/download?size={size}")
        response = conn.getresponse()
        assert response.status == 200
        received = hashlib.sha256()
        first = response.read(MIB)
        received.update(first)

        # Stop reading. The backend keeps writing only as far as buffers allow: wait until
        # its progress stands still (the same count three polls in a row).
        history: list[int] = []

        def stalled() -> bool:
            history.append(a1.stats()["download_sent"])
            return len(history) >= 3 and history[-1] == history[-2] == history[-3]

        wait_until(stalled, timeout=20, interval=0.3, message="backend writes stall")
        assert history[-1] < 64 * MIB, f"backend sent {history[-1]} bytes to a stalled client"
        assert node.rss_kib() - idle < RSS_HEADROOM_KIB // 2, (idle, node.rss_kib())

        length = len(first)
        while piece := response.read(MIB):
            received.update(piece)
            length += len(piece)
    finally:
        conn.close()
    assert length == size
    assert received.hexdigest() == expected_sha256(size)


def test_slow_server_gets_backpressure_not_buffering(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    node = harness.node(one_pool_config([a1]))
    idle = _warm_rss(node)
    size = 200 * MIB
    sent = [0]
    result: list[Any] = []

    def body() -> Iterator[bytes]:
        for piece in download_pieces(size):
            sent[0] += len(piece)
            yield piece

    def upload() -> None:
        try:
            with HttpClient(node.addr(), timeout=60) as client:
                result.append(
                    client.request(
                        "POST", "/upload?hold=1", {"Content-Length": str(size)}, body=body()
                    )
                )
        except Exception as exc:
            result.append(exc)

    worker = threading.Thread(target=upload)
    worker.start()
    try:
        # The server reads nothing yet: the client's sending must stall on full buffers.
        history: list[int] = []

        def stalled() -> bool:
            history.append(sent[0])
            return len(history) >= 3 and history[-1] == history[-2] == history[-3] > 0

        wait_until(stalled, timeout=20, interval=0.3, message="client writes stall")
        assert history[-1] < 64 * MIB, f"proxy took {history[-1]} bytes for a stalled server"
        assert node.rss_kib() - idle < RSS_HEADROOM_KIB // 2, (idle, node.rss_kib())
    finally:
        a1.release()
        worker.join(60)
    (response,) = result
    assert isinstance(response, Response), response
    assert response.status == 200
    assert response.json() == {"length": size, "sha256": expected_sha256(size)}


def test_client_leaving_mid_download_frees_the_upstream(harness: Harness) -> None:
    node = single_backend_node(harness)
    with RawConn(node.addr()) as conn:
        conn.send(request_bytes("GET", f"/download?size={200 * MIB}"))
        conn.sock.recv(MIB)
    # The proxy notices, stops the transfer, and forgets the exchange.
    wait_until(
        lambda: node.server_status("app", "a1")["active"] == 0,
        timeout=10,
        message="no active exchange left on a1",
    )
    response = http_request(node.addr(), "GET", "/")
    assert (response.status, response.body) == (200, b"a1")


def test_http_1_0_client_gets_an_unchunked_body_and_a_close(harness: Harness) -> None:
    node = single_backend_node(harness)
    size = 300_000
    with RawConn(node.addr()) as conn:
        # The backend answers chunked; an HTTP/1.0 client cannot read chunked (RFC 9112 7).
        conn.send(f"GET /download?size={size} HTTP/1.0\r\nHost: test.local\r\n\r\n".encode())
        response = conn.read_response()
        assert response.status == 200
        assert (response.header("Transfer-Encoding") or "").lower() != "chunked"
        assert len(response.body) == size
        assert hashlib.sha256(response.body).hexdigest() == expected_sha256(size)
        assert conn.is_closed_by_peer(timeout=5)


# --- upgrades --------------------------------------------------------------------------


def test_websocket_is_tunnelled(harness: Harness) -> None:
    node = single_backend_node(harness)
    host, port = node.addr()

    async def talk() -> list[Any]:
        answers: list[Any] = []
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                f"http://{host}:{port}/ws", timeout=aiohttp.ClientWSTimeout(ws_close=5)
            ) as ws,
        ):
            for i in range(5):
                await ws.send_str(f"message {i}")
                answers.append((await ws.receive(timeout=5)).data)
            await ws.send_bytes(b"\x00\x01binary" * 1000)
            answers.append((await ws.receive(timeout=5)).data)
        return answers

    answers = asyncio.run(talk())
    assert answers == [f"message {i}" for i in range(5)] + [b"\x00\x01binary" * 1000]
    # The proxy serves plain requests after the tunnel closed.
    assert http_request(node.addr(), "GET", "/").body == b"a1"


# --- routes ----------------------------------------------------------------------------


def test_routes_by_path_prefix_and_host(harness: Harness) -> None:
    a1, b1, c1 = harness.backends("a1", "b1", "c1")
    config = one_pool_config([a1])
    config["pools"]["api"] = one_pool_config([b1])["pools"]["app"]
    config["pools"]["adm"] = one_pool_config([c1])["pools"]["app"]
    config["listeners"][0]["routes"] = [
        {"match": {"path_prefix": "/api"}, "pool": "api"},
        {"match": {"host": "admin.example.test"}, "pool": "adm"},
    ]
    node = harness.node(config)
    addr = node.addr()

    def backend_for(path: str, host: str = "www.example.test") -> str | None:
        return http_request(addr, "GET", path, {"Host": host}).header("X-Backend")

    assert backend_for("/") == "a1"
    assert backend_for("/echo") == "a1"
    assert backend_for("/api/users") == "b1"
    assert backend_for("/api") == "b1"
    assert backend_for("/", host="admin.example.test") == "c1"
    # First match wins: the path rule comes before the host rule.
    assert backend_for("/api/x", host="admin.example.test") == "b1"
