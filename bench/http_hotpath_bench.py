"""Python cost of one proxied HTTP request, without sockets: µs per request.

Feeds a wrk-like request into a Downstream and an nginx-like response into its Upstream
over fake transports, so that only ninelives' own work per request is timed (parsing
callbacks, server choice, head rewriting, accounting). Run before and after every change
to the data plane: `python bench/http_hotpath_bench.py [REQUESTS]`.

It also times the floor: a bare forwarder that feeds both messages to httptools (only
``on_message_complete``) and writes them on, with no server choice, no head checks and
no accounting. On this machine such a forwarder reaches HAProxy's req/s under wrk; the
gap between the two numbers is what the HTTP path can still win.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import httptools
import uvloop

from ninelives.config import parse_config
from ninelives.http.context import HttpContext
from ninelives.http.downstream import Downstream
from ninelives.http.upstream import Upstream
from ninelives.listener import ListenerStats
from ninelives.pool import Pool
from ninelives.states import Health

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 03:44:30 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 14\r\n"
    b"Connection: keep-alive\r\n\r\nhello from s1\n"
)


class FakeTransport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += 1

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else None

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


class _BareSide:
    """One side of the bare forwarder: parse, and write the bytes on unchanged."""

    def __init__(self, response: bool, peer: FakeTransport) -> None:
        self.peer = peer
        self.parser = (httptools.HttpResponseParser if response else httptools.HttpRequestParser)(
            self
        )

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)
        self.peer.write(data)

    def on_message_complete(self) -> None:
        pass


def bare_floor(n: int) -> float:
    """Seconds per request of the bare forwarder (best of 5)."""
    client_side = _BareSide(False, FakeTransport())
    server_side = _BareSide(True, FakeTransport())
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n // 5):
            client_side.data_received(REQUEST)
            server_side.data_received(RESPONSE)
        best = min(best, (time.perf_counter() - start) / (n // 5))
    return best


def main(n: int = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000) -> None:
    loop = uvloop.new_event_loop()
    cfg = parse_config(
        "listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]\n"
        "pools: {app: {servers: [{name: s1, address: 127.0.0.1:1},"
        " {name: s2, address: 127.0.0.1:2}]}}\n"
    )
    pool = Pool("app", cfg.pools["app"], initial=Health.UP)
    ctx = HttpContext(loop=loop, stats=ListenerStats("web", "http", "app"), pool=pool)
    down = Downstream(ctx)
    down.connection_made(FakeTransport())
    for server in pool.servers:
        upstream = Upstream(server, loop)
        upstream.connection_made(FakeTransport())
        server.idle.append(upstream)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n // 5):
            down.data_received(REQUEST)
            ex = down.current
            assert ex is not None and ex.upstream is not None
            ex.upstream.data_received(RESPONSE)
        best = min(best, (time.perf_counter() - start) / (n // 5))
    assert sum(s.requests for s in pool.servers) == n
    print(f"{best * 1e6:.2f} us per proxied request (Python work only, best of 5)")
    floor = bare_floor(n)
    print(
        f"{floor * 1e6:.2f} us for a bare httptools forwarder (the floor), "
        f"ninelives / floor = {best / floor:.1f}"
    )
    loop.close()


if __name__ == "__main__":
    main()
