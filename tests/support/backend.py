"""A real HTTP backend for integration tests, run as its own process.

``python -m tests.support.backend --name a1 [--port 0] [--host 127.0.0.1] [--delay 0]``
prints ``backend ready name=a1 port=NNNN`` on stdout once it listens, then serves
until SIGTERM. Every response carries ``X-Backend: NAME`` and ``X-Conn: PEERPORT`` (the
client side port of the TCP connection, so tests can tell how many upstream
connections the proxy opened).

Endpoints: ``/`` (the name, after ``--delay`` seconds), ``/echo`` (the request as JSON),
``/upload`` (length and sha256 of the body, read streaming), ``/download?size=N[&cl=1]``
(N deterministic bytes streamed in 64 KiB pieces), ``/status/NNN``, ``/slow?delay=S``,
``/ws`` (websocket echo), ``/healthz`` and ``/flaky`` (200, or 503 while sick), ``/admin/sick``,
``/admin/well``, ``/admin/stats``, ``/admin/release`` (lets ``/upload?hold=1`` read its
body), ``/close`` (``Connection: close``), ``/reset`` (abort without a response),
``/garbage`` (a malformed status line, then close).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import signal
import socket
import struct
import sys
from collections import Counter
from collections.abc import Iterator

from aiohttp import WSMsgType, web
from aiohttp.typedefs import Handler

PIECE = 64 * 1024
_BASE = hashlib.shake_256(b"ninelives test data").digest(PIECE)


def download_piece(index: int) -> bytes:
    """Piece ``index`` of the deterministic stream: a counter, then a fixed pattern.

    The counter makes a reordered or repeated piece change the sha256, which a
    repeated constant block would not.
    """
    return index.to_bytes(8, "big") + _BASE[8:]


def download_pieces(size: int) -> Iterator[bytes]:
    index = 0
    left = size
    while left > 0:
        piece = download_piece(index)[: min(PIECE, left)]
        yield piece
        left -= len(piece)
        index += 1


def download_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for piece in download_pieces(size):
        digest.update(piece)
    return digest.hexdigest()


class State:
    def __init__(self, name: str, delay: float) -> None:
        self.name = name
        self.delay = delay
        self.sick = False
        self.requests: Counter[str] = Counter()
        self.in_flight = 0
        self.download_sent = 0
        self.release = asyncio.Event()


STATE = web.AppKey("state", State)


def _peer_port(request: web.Request) -> str:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return str(peer[1]) if peer else "?"


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Backend"] = request.app[STATE].name
    response.headers["X-Conn"] = _peer_port(request)


@web.middleware
async def _count(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    state.requests[request.path] += 1
    state.in_flight += 1
    try:
        return await handler(request)
    finally:
        state.in_flight -= 1


async def root(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.delay > 0:
        await asyncio.sleep(state.delay)
    return web.Response(text=state.name)


async def _digest_body(request: web.Request) -> tuple[int, str]:
    digest = hashlib.sha256()
    length = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        length += len(chunk)
    return length, digest.hexdigest()


async def echo(request: web.Request) -> web.Response:
    length, sha = await _digest_body(request)
    return web.json_response(
        {
            "backend": request.app[STATE].name,
            "method": request.method,
            "path": request.path_qs,
            "version": f"{request.version.major}.{request.version.minor}",
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
            "body_length": length,
            "body_sha256": sha,
            "conn": _peer_port(request),
        }
    )


async def upload(request: web.Request) -> web.Response:
    if request.query.get("hold") == "1":
        # Read nothing until POST /admin/release: a server that does not keep up.
        state = request.app[STATE]
        await state.release.wait()
        state.release.clear()
    length, sha = await _digest_body(request)
    return web.json_response({"length": length, "sha256": sha})


async def download(request: web.Request) -> web.StreamResponse:
    size = int(request.query.get("size", "0"))
    state = request.app[STATE]
    state.download_sent = 0
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    if request.query.get("cl") == "1":
        response.content_length = size
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    for piece in download_pieces(size):
        await response.write(piece)
        state.download_sent += len(piece)
    await response.write_eof()
    return response


async def stall(request: web.Request) -> web.StreamResponse:
    """Promise 2N bytes, send N, then fall silent until /admin/release."""
    size = int(request.query.get("size", "1024"))
    state = request.app[STATE]
    state.release.clear()
    response = web.StreamResponse()
    response.content_length = 2 * size
    await response.prepare(request)
    await response.write(b"s" * size)
    await state.release.wait()
    await response.write(b"s" * size)
    return response


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    if code in (204, 304) or code < 200:
        return web.Response(status=code)
    return web.Response(status=code, text=f"status {code}")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("delay", "1")))
    return web.Response(text="slow")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def flaky(request: web.Request) -> web.Response:
    """503 while sick (health checks aside), else 200: the name and the body's length."""
    body = await request.read()
    if request.app[STATE].sick:
        return web.Response(status=503, text="sick")
    return web.Response(text=f"{request.app[STATE].name} {len(body)}")


async def healthz(request: web.Request) -> web.Response:
    if request.app[STATE].sick:
        return web.Response(status=503, text="sick")
    return web.Response(text="ok")


async def sick(request: web.Request) -> web.Response:
    request.app[STATE].sick = True
    return web.Response(text="sick")


async def well(request: web.Request) -> web.Response:
    request.app[STATE].sick = False
    return web.Response(text="well")


async def release(request: web.Request) -> web.Response:
    request.app[STATE].release.set()
    return web.Response(text="released")


async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "requests": dict(state.requests),
            "in_flight": state.in_flight,
            "download_sent": state.download_sent,
        }
    )


async def close(request: web.Request) -> web.Response:
    response = web.Response(text="closing")
    response.force_close()
    return response


async def _never_answer(request: web.Request, raw: bytes | None) -> web.Response:
    transport = request.transport
    assert transport is not None
    if raw is not None:
        transport.write(raw)
        transport.close()
    else:
        # SO_LINGER 0 turns the close into a TCP RST: a reset, not a clean FIN.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # The connection is gone; aiohttp notices and drops whatever is returned.
    raise asyncio.CancelledError


async def reset(request: web.Request) -> web.Response:
    return await _never_answer(request, None)


async def garbage(request: web.Request) -> web.Response:
    return await _never_answer(request, b"HTTP/1.1 OK-ISH nonsense\r\nX: \x00\x01\r\n\r\n")


def make_app(name: str, delay: float) -> web.Application:
    app = web.Application(middlewares=[_count])
    app[STATE] = State(name, delay)
    app.on_response_prepare.append(_stamp)
    app.router.add_get("/", root)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/upload", upload)
    app.router.add_get("/download", download)
    app.router.add_get("/stall", stall)
    app.router.add_route("*", "/status/{code:\\d+}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/flaky", flaky)
    app.router.add_post("/admin/sick", sick)
    app.router.add_post("/admin/well", well)
    app.router.add_post("/admin/release", release)
    app.router.add_get("/admin/stats", stats)
    app.router.add_get("/close", close)
    app.router.add_route("*", "/reset", reset)
    app.router.add_route("*", "/garbage", garbage)
    return app


async def serve(name: str, host: str, port: int, delay: float) -> None:
    runner = web.AppRunner(make_app(name, delay), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    bound = server.sockets[0].getsockname()[1]
    print(f"backend ready name={name} port={bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering /")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.name, args.host, args.port, args.delay))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
