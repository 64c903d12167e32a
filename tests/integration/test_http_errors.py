"""What the client gets when something fails, and that the proxy keeps serving after it.

502: the server failed (refused, reset, malformed response). 503: no server available.
504: no response in time. 400: the client's request is malformed (and the connection
is closed after the answer).
"""

from __future__ import annotations

import time
from typing import Any

from tests.support.node import (
    Harness,
    Node,
    RawConn,
    free_port,
    http_request,
    one_pool_config,
    request_bytes,
)


def assert_still_serving(node: Node) -> None:
    response = http_request(node.addr(), "GET", "/")
    assert (response.status, response.body) == (200, b"a1"), response


def test_503_when_every_server_is_down_and_other_pools_still_serve(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    config = one_pool_config([a1])
    dead = one_pool_config([])["pools"]["app"]
    dead["servers"] = [
        {"name": "dead1", "address": f"127.0.0.1:{free_port()}"},
        {"name": "dead2", "address": f"127.0.0.1:{free_port()}"},
    ]
    config["pools"]["dead"] = dead
    config["listeners"][0]["routes"] = [{"match": {"path_prefix": "/dead"}, "pool": "dead"}]
    node = harness.node(config)
    # The first round of health checks ran before the readiness line: both are down now.
    for _ in range(3):
        response = http_request(node.addr(), "GET", "/dead/x")
        assert response.status == 503, response
    assert_still_serving(node)


def test_502_when_the_server_refuses_before_health_notices(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    pool: dict[str, Any] = {"health": {"tcp": {}, "interval": "1h", "rise": 1, "fall": 1}}
    node = harness.node(one_pool_config([a1], pool))
    assert_still_serving(node)
    a1.stop()
    # Health checks run once an hour, so the server still counts as up: connecting fails.
    response = http_request(node.addr(), "GET", "/")
    assert response.status == 502, response
    harness.backend("a1", port=a1.port)
    assert_still_serving(node)


def test_502_when_the_server_resets_the_connection(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    node = harness.node(one_pool_config([a1]))
    for _ in range(2):
        response = http_request(node.addr(), "GET", "/reset")
        assert response.status == 502, response
        assert_still_serving(node)


def test_502_when_the_server_answers_garbage(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    node = harness.node(one_pool_config([a1]))
    for _ in range(2):
        response = http_request(node.addr(), "GET", "/garbage")
        assert response.status == 502, response
        assert_still_serving(node)


def test_504_when_the_response_takes_longer_than_the_timeout(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    pool = {"timeouts": {"connect": "1s", "response": "500ms", "idle": "60s"}}
    node = harness.node(one_pool_config([a1], pool))
    started = time.monotonic()
    response = http_request(node.addr(), "GET", "/slow?delay=3")
    elapsed = time.monotonic() - started
    assert response.status == 504, response
    assert 0.4 < elapsed < 2.5, elapsed
    assert_still_serving(node)


def test_400_on_a_malformed_request_line_then_close(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    node = harness.node(one_pool_config([a1]))
    with RawConn(node.addr(), timeout=5) as conn:
        conn.send(b"GARBAGE\r\n\r\n")
        response = conn.read_response()
        assert response.status == 400, response
        assert conn.is_closed_by_peer(timeout=5), "connection left open after a 400"
    assert_still_serving(node)
    assert a1.stats()["requests"].get("/", 0) == 1, "the bad request reached the backend"


def test_400_on_content_length_with_transfer_encoding_then_close(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    node = harness.node(one_pool_config([a1]))
    smuggled = request_bytes("GET", "/echo?smuggled=1")
    body = b"0\r\n\r\n" + smuggled
    with RawConn(node.addr(), timeout=5) as conn:
        conn.send(
            request_bytes(
                "POST",
                "/echo",
                {"Content-Length": str(len(body)), "Transfer-Encoding": "chunked"},
            )
            + body
        )
        response = conn.read_response()
        assert response.status == 400, response
        assert conn.is_closed_by_peer(timeout=5), "connection left open after a 400"
    assert_still_serving(node)
    assert a1.stats()["requests"].get("/echo", 0) == 0, "a smuggling attempt reached the backend"
