"""A tiny HTTP backend for ``ninelives demo``: answers every request with its own name.

``python -m ninelives.demo_backend --name a1 --port 0`` prints
``backend ready name=a1 port=NNNN`` once it listens. httptools parses the requests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import httptools
import uvloop


class DemoBackend(asyncio.Protocol):
    def __init__(self, name: bytes) -> None:
        self.name = name
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()

    def on_message_complete(self) -> None:
        body = b"hello from %b\n" % self.name
        keep = self.parser.should_keep_alive()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: %b\r\n"
            b"Content-Length: %d\r\n%b\r\n%b"
            % (self.name, len(body), b"" if keep else b"Connection: close\r\n", body)
        )
        if not keep:
            self.transport.close()


async def serve(name: str, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: DemoBackend(name.encode()), host, port, reuse_address=True
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
    args = parser.parse_args()
    uvloop.run(serve(args.name, args.host, args.port))


if __name__ == "__main__":
    main()
