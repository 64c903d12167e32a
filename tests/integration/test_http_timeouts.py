"""Idle and response timeouts on the server side of the HTTP proxy.

``timeouts.response`` runs from the moment the whole request has been sent, so a long
upload does not eat into it. ``timeouts.idle`` closes pooled server connections nobody
used, and aborts a response whose server fell silent mid-body.
"""

from __future__ import annotations

import socket
import time

from tests.support.node import Harness, RawConn, http_request, one_pool_config, wait_until

PACE = 0.05  # seconds between the pieces of a deliberately slow upload (traffic, not a wait)


def test_pooled_server_connections_are_closed_after_the_idle_timeout(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    node = harness.node(one_pool_config([a1], {"timeouts": {"idle": "400ms"}}))
    assert http_request(node.addr(), "GET", "/").status == 200
    # The response came back on a pooled connection that now waits idle ...
    assert node.server_status("app", "a1")["idle_connections"] == 1
    # ... until the idle timeout closes it.
    wait_until(lambda: node.server_status("app", "a1")["idle_connections"] == 0, timeout=5)
    assert http_request(node.addr(), "GET", "/").status == 200


def test_an_upload_longer_than_the_response_timeout_is_not_cut(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    node = harness.node(one_pool_config([a1], {"timeouts": {"response": "300ms"}}))
    pieces = 20  # 20 x 50 ms: about three times the response timeout
    body_piece = b"u" * 1000
    conn = RawConn(node.addr())
    conn.send(
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
        % (pieces * len(body_piece))
    )
    for _ in range(pieces):
        conn.send(body_piece)
        time.sleep(PACE)
    response = conn.read_response()
    assert response.status == 200, response
    assert response.json()["length"] == pieces * len(body_piece)


def test_a_server_silent_mid_body_is_cut_after_the_idle_timeout(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    node = harness.node(one_pool_config([a1], {"timeouts": {"idle": "500ms"}}))
    sock = socket.create_connection(node.addr(), timeout=10)
    sock.sendall(b"GET /stall?size=1000 HTTP/1.1\r\nHost: t\r\n\r\n")
    started = time.monotonic()
    received = b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        received += data
    elapsed = time.monotonic() - started
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"Content-Length: 2000" in head
    # Half of the promised body, then the proxy gave up on the silent server: the client
    # sees a short body and a closed connection, never a hang.
    assert len(body) == 1000
    assert 0.4 < elapsed < 5, elapsed
    a1.release()
    assert http_request(node.addr(), "GET", "/").status == 200
