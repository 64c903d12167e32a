"""The TCP proxy in-process against real TCP backends on 127.0.0.1, on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from ninelives.config import parse_config
from ninelives.listener import ListenerStats
from ninelives.pool import Pool
from ninelives.states import Health, Signal
from ninelives.tcp import HIGH_WATER, Downstream, tcp_protocol_factory
from tests.support.aio import until

SAMPLE_INTERVAL = 0.002  # how often buffer sizes are sampled during a transfer
TRAFFIC_PERIOD = 0.1  # a byte this often keeps a connection from being idle

Handler = Callable[["Backend", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
CHUNK = 64 * 1024


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Coroutine[Any, Any, None]], None]]:
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:

        def run_bounded(scenario: Coroutine[Any, Any, None]) -> None:
            async def bounded() -> None:
                async with asyncio.timeout(30):
                    await scenario

            runner.run(bounded())

        yield run_bounded


# -- backends ---------------------------------------------------------------------------------


class Backend:
    """A TCP server on 127.0.0.1:0 running ``handler`` for each connection."""

    def __init__(self, name: str, handler: Handler) -> None:
        self.name = name
        self.handler = handler
        self.connections = 0
        self.received = b""
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Backend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the test is over or the proxy closed us: either way this handler is done
        finally:
            writer.close()
            self.tasks.discard(task)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in self.writers:
                writer.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)


async def echo(backend: Backend, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        w.write(data)
        await w.drain()


async def hello(backend: Backend, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(backend.name.encode() + b"\n")
    await echo(backend, reader, w)


async def reply_after_eof(
    backend: Backend, reader: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    data = await reader.read()  # until the client's EOF
    w.write(f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode())
    await w.drain()


async def greet_then_listen(
    backend: Backend, reader: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    w.write(b"greeting")
    w.write_eof()  # the server is done talking, but still listens
    backend.received = await reader.read()


STREAM_SIZE = 50 * 1024 * 1024


def stream_piece(index: int) -> bytes:
    return index.to_bytes(8, "big") + bytes(CHUNK - 8)


async def stream(backend: Backend, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    for index in range(STREAM_SIZE // CHUNK):
        w.write(stream_piece(index))
        await w.drain()


def dead_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the proxy --------------------------------------------------------------------------------


class Proxy:
    def __init__(self, pool: Pool, stats: ListenerStats) -> None:
        self.pool = pool
        self.stats = stats
        self.protocols: list[Downstream] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Proxy:
        loop = asyncio.get_running_loop()
        factory = tcp_protocol_factory(self.stats, self.pool, loop)

        def tracking() -> asyncio.Protocol:
            protocol = factory()
            assert isinstance(protocol, Downstream)
            self.protocols.append(protocol)
            return protocol

        self.server = await loop.create_server(tracking, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for protocol in self.connected():
            protocol.close()

    def connected(self) -> list[Downstream]:
        """The client connections the proxy has accepted (connection_made was called)."""
        return [p for p in self.protocols if hasattr(p, "transport")]

    def idle(self) -> bool:
        return self.stats.active == 0 and all(s.active == 0 for s in self.pool.servers)


def make_proxy(servers: str, pool_extra: str = "", idle: str = "60s") -> Proxy:
    text = f"""
listeners:
  - {{name: front, bind: [127.0.0.1:0], protocol: tcp, pool: app}}
pools:
  app:
    timeouts: {{connect: 1s, idle: {idle}}}
{pool_extra}
    servers:
{servers}
"""
    config = parse_config(text)
    pool = Pool("app", config.pools["app"], initial=Health.UP)
    return Proxy(pool, ListenerStats("front", "tcp", "app"))


def server_line(name: str, port: int, backup: bool = False) -> str:
    extra = ", backup: true" if backup else ""
    return f"      - {{name: {name}, address: 127.0.0.1:{port}{extra}}}"


async def read_line(reader: asyncio.StreamReader) -> str:
    return (await reader.readline()).decode().strip()


# -- tests ------------------------------------------------------------------------------------


def test_echo_10mb_round_trip_is_intact(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def scenario() -> None:
        backend = await Backend("e1", echo).start()
        proxy = await make_proxy(server_line("e1", backend.port)).start()
        try:
            payload = hashlib.shake_256(b"ninelives").digest(10 * 1024 * 1024)
            reader, writer = await proxy.connect()

            async def send() -> None:
                for start in range(0, len(payload), CHUNK):
                    writer.write(payload[start : start + CHUNK])
                    await writer.drain()
                writer.write_eof()

            sender = asyncio.create_task(send())
            received = await reader.read()  # until the proxy forwards the backend's EOF
            await sender
            writer.close()
            assert len(received) == len(payload)
            assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
            await until(proxy.idle, "the connection to be closed on both sides")
            server = proxy.pool.by_name["e1"]
            assert (server.requests, server.responses[2], server.failures) == (1, 1, 0)
            assert proxy.stats.connections == 1
            assert proxy.stats.responses[2] == 1
            assert proxy.stats.responses[0] == 0
        finally:
            proxy.stop()
            await backend.stop()

    run(scenario())


def test_slow_client_backpressure_bounds_proxy_buffers(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def scenario() -> None:
        backend = await Backend("s1", stream).start()
        proxy = await make_proxy(server_line("s1", backend.port)).start()
        most_buffered = 0
        upstream_paused = False
        sampling = True

        async def sample() -> None:
            nonlocal most_buffered, upstream_paused
            while sampling:
                for down in proxy.connected():
                    buffered = down.transport.get_write_buffer_size()
                    if down.upstream is not None:
                        buffered += down.upstream.transport.get_write_buffer_size()
                        upstream_paused |= not down.upstream.transport.is_reading()
                    most_buffered = max(most_buffered, buffered)
                await asyncio.sleep(SAMPLE_INTERVAL)

        sampler = asyncio.create_task(sample())
        try:
            # A stream reader stops reading its socket once 128 KiB are buffered: a client
            # that does not read.
            reader, writer = await proxy.connect()
            # The proof that the proxy stopped reading the server: the server cannot send.
            await until(
                lambda: (
                    bool(backend.writers)
                    and backend.writers[0].transport.get_write_buffer_size() > 0
                    and upstream_paused
                ),
                "the backend to be blocked by the proxy",
            )
            assert most_buffered <= HIGH_WATER + 512 * 1024, most_buffered
            # Now read everything: nothing was lost while paused.
            digest = hashlib.sha256()
            total = 0
            while chunk := await reader.read(CHUNK):
                digest.update(chunk)
                total += len(chunk)
            expected = hashlib.sha256()
            for index in range(STREAM_SIZE // CHUNK):
                expected.update(stream_piece(index))
            assert total == STREAM_SIZE
            assert digest.digest() == expected.digest()
            assert most_buffered <= HIGH_WATER + 512 * 1024, most_buffered
            writer.close()
        finally:
            sampling = False
            await sampler
            proxy.stop()
            await backend.stop()

    run(scenario())


def test_half_close_client_eof_then_server_replies(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def scenario() -> None:
        backend = await Backend("h1", reply_after_eof).start()
        proxy = await make_proxy(server_line("h1", backend.port)).start()
        try:
            data = b"x" * 300_000
            reader, writer = await proxy.connect()
            writer.write(data)
            writer.write_eof()  # shut down our write side only
            reply = await reader.read()
            assert reply.decode() == f"{len(data)} {hashlib.sha256(data).hexdigest()}"
            writer.close()
            await until(proxy.idle, "the connection to be closed on both sides")
            assert proxy.stats.responses[2] == 1
        finally:
            proxy.stop()
            await backend.stop()

    run(scenario())


def test_half_close_server_eof_then_client_still_sends(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def scenario() -> None:
        backend = await Backend("g1", greet_then_listen).start()
        proxy = await make_proxy(server_line("g1", backend.port)).start()
        try:
            reader, writer = await proxy.connect()
            assert await reader.read() == b"greeting"  # ends with the server's EOF
            writer.write(b"still talking")
            writer.write_eof()
            await until(lambda: backend.received == b"still talking", "the late bytes to arrive")
            await until(proxy.idle, "the connection to be closed on both sides")
            writer.close()
        finally:
            proxy.stop()
            await backend.stop()

    run(scenario())


def test_roundrobin_spreads_connections(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def scenario() -> None:
        a = await Backend("a1", hello).start()
        b = await Backend("a2", hello).start()
        servers = server_line("a1", a.port) + "\n" + server_line("a2", b.port)
        proxy = await make_proxy(servers).start()
        try:
            seen: Counter[str] = Counter()
            for _ in range(6):
                reader, writer = await proxy.connect()
                seen[await read_line(reader)] += 1
                writer.close()
            assert seen == {"a1": 3, "a2": 3}
            await until(proxy.idle, "every connection to be closed")
            assert proxy.stats.responses[2] == 6
        finally:
            proxy.stop()
            await a.stop()
            await b.stop()

    run(scenario())


def test_hash_on_client_ip_pins_a_client(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def scenario() -> None:
        a = await Backend("a1", hello).start()
        b = await Backend("a2", hello).start()
        servers = server_line("a1", a.port) + "\n" + server_line("a2", b.port)
        proxy = await make_proxy(servers, "    balance: hash\n    hash_on: client_ip").start()
        try:
            seen: Counter[str] = Counter()
            for _ in range(5):
                reader, writer = await proxy.connect()
                seen[await read_line(reader)] += 1
                writer.close()
            assert len(seen) == 1 and sum(seen.values()) == 5
        finally:
            proxy.stop()
            await a.stop()
            await b.stop()

    run(scenario())


def test_refused_backend_is_skipped(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def scenario() -> None:
        live = await Backend("live", hello).start()
        servers = server_line("dead", dead_port()) + "\n" + server_line("live", live.port)
        proxy = await make_proxy(servers).start()
        try:
            for _ in range(4):
                reader, writer = await proxy.connect()
                assert await read_line(reader) == "live"
                writer.close()
            await until(proxy.idle, "every connection to be closed")
            dead = proxy.pool.by_name["dead"]
            # Round robin sends every other connection to the dead server first.
            assert dead.failures == 2 and dead.responses[0] == 2
            assert proxy.pool.by_name["live"].requests == 4
            assert proxy.stats.responses[2] == 4 and proxy.stats.responses[0] == 0
        finally:
            proxy.stop()
            await live.stop()

    run(scenario())


def test_dead_primary_tier_falls_over_to_the_backup(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def scenario() -> None:
        backup = await Backend("b1", hello).start()
        servers = (
            server_line("d1", dead_port())
            + "\n"
            + server_line("d2", dead_port())
            + "\n"
            + server_line("b1", backup.port, True)
        )
        proxy = await make_proxy(servers).start()
        try:
            # No health checks run here: the primaries still count as up, and every connect
            # to them is refused. Nothing was sent, so the backup tier takes the client.
            reader, writer = await proxy.connect()
            assert await read_line(reader) == "b1"
            writer.close()
            await until(proxy.idle, "the client connection to be closed")
            assert [s.failures for s in proxy.pool.servers] == [1, 1, 0]
            assert proxy.stats.responses[2] == 1
        finally:
            proxy.stop()
            await backup.stop()

    run(scenario())


def test_all_backends_dead_closes_the_client(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def scenario() -> None:
        servers = server_line("d1", dead_port()) + "\n" + server_line("d2", dead_port())
        proxy = await make_proxy(servers).start()
        try:
            reader, writer = await proxy.connect()
            writer.write(b"anyone?")
            # Closed with our bytes unread: the kernel may say so with a reset instead of EOF.
            with contextlib.suppress(ConnectionResetError):
                assert await reader.read() == b""
            writer.close()
            await until(proxy.idle, "the client connection to be closed")
            assert [s.failures for s in proxy.pool.servers] == [1, 1]
            assert proxy.stats.responses[0] == 1 and proxy.stats.responses[2] == 0
        finally:
            proxy.stop()

    run(scenario())


def test_no_available_server_closes_the_client(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def scenario() -> None:
        backend = await Backend("e1", echo).start()
        proxy = await make_proxy(server_line("e1", backend.port)).start()
        try:
            e1 = proxy.pool.by_name["e1"]
            proxy.pool.check_result(e1, Signal.FALL, "marked down by the test")
            reader, writer = await proxy.connect()
            assert await reader.read() == b""
            writer.close()
            await until(proxy.idle, "the client connection to be closed")
            assert proxy.pool.no_server == 1 and proxy.stats.responses[0] == 1
            assert backend.connections == 0
        finally:
            proxy.stop()
            await backend.stop()

    run(scenario())


def test_idle_timeout_closes_both_sides(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        backend = await Backend("e1", echo).start()
        proxy = await make_proxy(server_line("e1", backend.port), idle="300ms").start()
        try:
            reader, writer = await proxy.connect()
            # Traffic more often than the idle timeout keeps the connection open.
            started = loop.time()
            last = started
            while last - started < 0.9:
                await asyncio.sleep(TRAFFIC_PERIOD)  # keep the connection busy, not a wait
                writer.write(b"ping")
                assert await reader.readexactly(4) == b"ping"
                last = loop.time()
            assert await reader.read() == b""  # then silence: the proxy closes us
            waited = loop.time() - last
            assert 0.25 <= waited < 3.0, waited
            await until(proxy.idle, "both sides to be closed")
            await until(backend.writers[0].is_closing, "the backend to see the close")
            writer.close()
        finally:
            proxy.stop()
            await backend.stop()

    run(scenario())


def test_backup_tier_takes_over_and_primary_fails_back(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def scenario() -> None:
        primary = await Backend("p1", hello).start()
        backup = await Backend("b1", hello).start()
        servers = server_line("p1", primary.port) + "\n" + server_line("b1", backup.port, True)
        proxy = await make_proxy(servers).start()
        pool = proxy.pool

        async def who() -> str:
            reader, writer = await proxy.connect()
            try:
                return await read_line(reader)
            finally:
                writer.close()

        try:
            assert await who() == "p1"
            pool.check_result(pool.by_name["p1"], Signal.FALL, "marked down by the test")
            assert [await who() for _ in range(3)] == ["b1"] * 3
            pool.check_result(pool.by_name["p1"], Signal.RISE, "marked up by the test")
            assert await who() == "p1"
        finally:
            proxy.stop()
            await primary.stop()
            await backup.stop()

    run(scenario())
