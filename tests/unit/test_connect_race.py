"""A server connection lost between its making and the first use of it.

``loop.create_connection`` returns after ``connection_made``; the task that asked for it
runs again only on a later turn of the loop. A server that dies in between (killed after
its accept) has its reset read first: ``connection_lost`` then knows of no request on the
connection. The request must go to another server, not be written to the dead socket and
wait for an answer that cannot come. Real sockets make this turn order rare (2 of about
90 kill drills); a loop whose ``create_connection`` loses the connection before returning
makes it certain.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ninelives.config import parse_config
from ninelives.http.context import HttpContext
from ninelives.http.downstream import Downstream
from ninelives.listener import ListenerStats
from ninelives.pool import Pool
from ninelives.states import Health

CONFIG = """
listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]
pools: {app: {servers: [{name: a1, address: 127.0.0.1:1}, {name: a2, address: 127.0.0.1:2}]}}
"""
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else None

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False


class RacyLoop(asyncio.SelectorEventLoop):
    """Connections to port 1 (a1) are reset before the caller gets them back."""

    def __init__(self) -> None:
        super().__init__()
        self.transports: dict[int, list[Transport]] = {1: [], 2: []}

    async def create_connection(  # type: ignore[override]
        self, protocol_factory: Any, host: str, port: int, **kwargs: Any
    ) -> tuple[Transport, Any]:
        protocol = protocol_factory()
        transport = Transport()
        self.transports[port].append(transport)
        protocol.connection_made(transport)
        if port == 1:
            transport.closed = True
            protocol.connection_lost(ConnectionResetError("reset by peer"))
        return transport, protocol


def test_a_request_whose_new_connection_died_before_use_goes_to_another_server() -> None:
    loop = RacyLoop()
    try:
        pool = Pool("app", parse_config(CONFIG, env={}).pools["app"], initial=Health.UP)
        ctx = HttpContext(loop=loop, stats=ListenerStats("web", "http", "app"), pool=pool)
        down = Downstream(ctx)
        client = Transport()
        down.connection_made(client)  # type: ignore[arg-type]

        async def scenario() -> None:
            down.data_received(REQUEST)  # round robin: a1 first, on a new connection
            for _ in range(100):  # turns of the loop until the connect task has run
                if loop.transports[2] and loop.transports[2][0].written:
                    break
                await asyncio.sleep(0)
            ex = down.current
            assert ex is not None and ex.server is pool.by_name["a2"], "not retried on a2"
            (to_a2,) = loop.transports[2]
            assert to_a2.written and to_a2.written[0].startswith(b"GET / HTTP/1.1")
            assert loop.transports[1][0].written == []  # nothing sent on the dead one

        loop.run_until_complete(scenario())
        a1 = pool.by_name["a1"]
        assert (a1.failures, a1.responses[0], a1.active) == (1, 1, 0)
        assert pool.retries == {"reset": 1}
    finally:
        loop.close()
