"""A tiny HTTP backend for ``ninelives demo`` and ``ninelives drill``: answers every request
with its own name.

``python -m ninelives.demo_backend --name a1 --port 0 [--delay 0]`` prints
``backend ready name=a1 port=NNNN`` once it listens. httptools parses the requests.
Every answer carries ``X-Backend: NAME``, so a client can tell which server answered.

Latency can be added at runtime, which is how ``ninelives drill --fault slow`` slows a
server down: ``POST /admin/delay?ms=300`` makes every later answer wait 300 ms (``ms=0``
removes it); that request itself is answered at once. Answers on one connection keep
their order whatever the delay was when each request arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httptools
import uvloop

DELAY_PATH = b"/admin/delay"


class Latency:
    """The delay added before every answer, shared by all connections of one backend."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class DemoBackend(asyncio.Protocol):
    def __init__(self, name: bytes, latency: Latency) -> None:
        self.name = name
        self.latency = latency
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        # Answers waiting for their time: (due, bytes, close after writing).
        self.due: deque[tuple[float, bytes, bool]] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.due.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        url, self.url = self.url, b""
        keep = self.parser.should_keep_alive()
        delay = self.latency.seconds
        if url.startswith(DELAY_PATH) and self.parser.get_method() == b"POST":
            body = self._set_delay(url)
            delay = 0.0
        else:
            body = b"hello from %b\n" % self.name
        data = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: %b\r\n"
            b"Content-Length: %d\r\n%b\r\n%b"
            % (self.name, len(body), b"" if keep else b"Connection: close\r\n", body)
        )
        if delay <= 0 and not self.due:
            self._write(data, not keep)
            return
        loop = asyncio.get_running_loop()
        self.due.append((loop.time() + delay, data, not keep))
        if self.timer is None:
            self._flush()

    def _set_delay(self, url: bytes) -> bytes:
        query = parse_qs(urlsplit(url.decode("latin-1")).query)
        try:
            millis = float(query["ms"][0])
        except (KeyError, ValueError):
            return b"expected /admin/delay?ms=N\n"
        self.latency.seconds = max(0.0, millis / 1000)
        return b"delay %gms\n" % millis

    def _flush(self) -> None:
        """Write every answer whose time has come, in order; wait for the next one."""
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        # An earlier answer that is due later holds back the ones behind it: order first.
        while self.due and self.due[0][0] <= now:
            _, data, close = self.due.popleft()
            self._write(data, close)
        if self.due and not self.transport.is_closing():
            self.timer = loop.call_at(self.due[0][0], self._flush)

    def _write(self, data: bytes, close: bool) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(data)
        if close:
            self.transport.close()


async def serve(name: str, host: str, port: int, delay: float = 0.0) -> None:
    loop = asyncio.get_running_loop()
    latency = Latency(delay)
    server = await loop.create_server(
        lambda: DemoBackend(name.encode(), latency), host, port, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"backend ready name={name} port={bound}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to each answer")
    args = parser.parse_args()
    uvloop.run(serve(args.name, args.host, args.port, args.delay))


if __name__ == "__main__":
    main()
