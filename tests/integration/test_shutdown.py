"""A node stopped with SIGTERM lets open TCP streams finish before it exits."""

from __future__ import annotations

import os
import signal
import time

from tests.support.node import (
    Harness,
    RawConn,
    one_pool_config,
    refuses_connections,
    wait_until,
)


def test_sigterm_lets_an_open_tcp_stream_finish_then_exits(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    config = one_pool_config([a1])
    config["listeners"].append(
        {"name": "raw", "bind": "127.0.0.1:0", "protocol": "tcp", "pool": "app"}
    )
    node = harness.node(config)
    addr = node.addr("raw")
    conn = RawConn(addr)
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert conn.read_response().body == b"a1"
    os.kill(node.pid, signal.SIGTERM)

    wait_until(
        lambda: refuses_connections(addr), timeout=5, message="TCP listener closed after SIGTERM"
    )
    # The stream that was open keeps working while the node waits for it ...
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert conn.read_response().body == b"a1"
    assert node.alive()
    # ... and once it ends, the node exits at once, well before its 15 s deadline.
    closed_at = time.monotonic()
    conn.sock.close()
    assert node.popen.wait(10) == 0
    assert time.monotonic() - closed_at < 5
