"""Active health checks against real HTTP and TCP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections import Counter
from collections.abc import Coroutine, Iterator
from itertools import pairwise
from typing import Any

import pytest
from aiohttp import web

from ninelives.config import parse_config
from ninelives.health import HealthChecker
from ninelives.pool import Pool
from tests.support.aio import until


def run(scenario: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(30):
            await scenario

    asyncio.run(bounded())


class HttpBackend:
    """An aiohttp app whose /healthz answers 200, or 503 while ``sick``."""

    def __init__(self, body: str = "status: ok") -> None:
        self.sick = False
        self.flap = False
        self.statuses: Counter[int] = Counter()
        self.body = body
        self.checks = 0
        self.times: list[tuple[float, int]] = []  # (loop time, status) of every check
        self.user_agents: set[str] = set()
        self.hosts: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def healthz(self, request: web.Request) -> web.Response:
        self.checks += 1
        if self.flap:
            self.sick = self.checks % 2 == 0  # pass, fail, pass, fail...
        self.statuses[503 if self.sick else 200] += 1
        self.times.append((asyncio.get_running_loop().time(), 503 if self.sick else 200))
        self.user_agents.add(request.headers.get("User-Agent", ""))
        self.hosts[request.headers.get("Host", "")] += 1
        return web.Response(status=503 if self.sick else 200, text=self.body)

    async def start(self) -> HttpBackend:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class SilentServer:
    """Accepts connections and never answers: a hung server."""

    async def start(self) -> SilentServer:
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.held: list[asyncio.StreamWriter] = []
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.held.append(writer)

    async def stop(self) -> None:
        self.server.close()
        for writer in self.held:
            writer.close()


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def make_pool(
    ports: dict[str, int], check: str, rise: int = 2, fall: int = 2,
    schedule: str = "interval: 100ms\n      timeout: 80ms",
) -> Pool:
    servers = "\n".join(
        f"      - {{name: {name}, address: 127.0.0.1:{port}}}" for name, port in ports.items()
    )
    text = f"""
listeners:
  - {{name: web, bind: [127.0.0.1:0], protocol: http, pool: app}}
pools:
  app:
    health:
      {check}
      {schedule}
      rise: {rise}
      fall: {fall}
    servers:
{servers}
"""
    return Pool("app", parse_config(text).pools["app"])


HTTP_CHECK = "http: {path: /healthz, expect: 200}"


class Transitions(logging.Handler):
    """The server transitions logged by the event log: (server, old, new, reason)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = record.__dict__
        if fields.get("kind") == "server":
            server = fields["entity"].partition("/")[2]
            self.seen.append((server, fields["old"], fields["new"], fields["reason"]))


@pytest.fixture
def transitions() -> Iterator[Transitions]:
    handler = Transitions()
    logger = logging.getLogger("ninelives.events")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_first_round_marks_a_dead_server_down_at_once(transitions: Transitions) -> None:
    async def scenario() -> None:
        live = await HttpBackend().start()
        try:
            pool = make_pool({"live": live.port, "dead": dead_port()}, HTTP_CHECK)
            checker = HealthChecker(pool, asyncio.get_running_loop())
            await checker.first_round()
            live_server, dead_server = pool.by_name["live"], pool.by_name["dead"]
            assert live_server.healthy and live_server.health_reason == "1 check passed: HTTP 200"
            assert not dead_server.healthy
            assert dead_server.health_reason == "1 check failed: connect refused"
            assert pool.candidates == (live_server,)
            assert transitions.seen == [
                ("live", "unchecked", "up", "1 check passed: HTTP 200"),
                ("dead", "unchecked", "down", "1 check failed: connect refused"),
            ]
            assert live.user_agents == {"ninelives-health"}
        finally:
            await live.stop()

    run(scenario())


def test_server_goes_down_after_fall_and_back_after_rise(transitions: Transitions) -> None:
    async def scenario() -> None:
        a, b = await HttpBackend().start(), await HttpBackend().start()
        pool = make_pool({"a": a.port, "b": b.port}, HTTP_CHECK, rise=2, fall=3)
        checker = HealthChecker(pool, asyncio.get_running_loop(), rng=random.Random(7))
        try:
            await checker.first_round()
            assert {s.name for s in pool.candidates} == {"a", "b"}
            transitions.seen.clear()
            checker.start()
            server = pool.by_name["a"]

            a.sick = True
            await until(lambda: not server.healthy, "a to be marked down")
            # The reason says how many failed checks it took: exactly `fall`.
            # Falling after the first failure (still in rotation), down after the third.
            assert transitions.seen == [
                ("a", "up", "falling", "1 check failed: HTTP 503, expected 200"),
                ("a", "falling", "down", "3 checks failed: HTTP 503, expected 200"),
            ]
            assert pool.candidates == (pool.by_name["b"],)

            a.sick = False
            await until(lambda: server.healthy, "a to come back")
            assert transitions.seen[2:] == [
                ("a", "down", "rising", "1 check passed: HTTP 200"),
                ("a", "rising", "up", "2 checks passed: HTTP 200"),
            ]
            assert {s.name for s in pool.candidates} == {"a", "b"}
            assert pool.by_name["b"].healthy  # the other server was never disturbed
        finally:
            await checker.stop()
            await a.stop()
            await b.stop()

    run(scenario())


def test_flapping_server_with_rise_and_fall_never_changes(transitions: Transitions) -> None:
    async def scenario() -> None:
        backend = await HttpBackend().start()
        pool = make_pool({"a": backend.port}, HTTP_CHECK, rise=2, fall=2)
        checker = HealthChecker(pool, asyncio.get_running_loop(), rng=random.Random(1))
        backend.flap = True
        try:
            await checker.first_round()
            transitions.seen.clear()
            checker.start()
            await until(lambda: backend.checks >= 8, "eight checks")
            assert backend.statuses[503] >= 4
            assert pool.by_name["a"].healthy
            # Every failure shows as "falling", every pass brings it back to "up": it is
            # never taken out of rotation.
            assert {new for _, _, new, _ in transitions.seen} == {"falling", "up"}
        finally:
            await checker.stop()
            await backend.stop()

    run(scenario())


def test_hung_server_fails_with_a_timeout() -> None:
    async def scenario() -> None:
        silent = await SilentServer().start()
        try:
            pool = make_pool({"hung": silent.port}, HTTP_CHECK)
            checker = HealthChecker(pool, asyncio.get_running_loop())
            await checker.first_round()
            server = pool.by_name["hung"]
            assert not server.healthy
            assert server.health_reason == "1 check failed: timeout after 80ms"
            assert pool.candidates == ()
        finally:
            await silent.stop()

    run(scenario())


def test_body_substring_is_checked() -> None:
    async def scenario() -> None:
        good, bad = await HttpBackend("status: ok").start(), await HttpBackend("degraded").start()
        try:
            check = 'http: {path: /healthz, expect: 2xx, body: "ok"}'
            pool = make_pool({"good": good.port, "bad": bad.port}, check)
            await HealthChecker(pool, asyncio.get_running_loop()).first_round()
            assert pool.by_name["good"].health_reason == "1 check passed: HTTP 200"
            assert pool.by_name["bad"].health_reason == '1 check failed: HTTP 200, body lacks "ok"'
            assert pool.candidates == (pool.by_name["good"],)
        finally:
            await good.stop()
            await bad.stop()

    run(scenario())


def test_tcp_check_is_a_connect() -> None:
    async def scenario() -> None:
        silent = await SilentServer().start()
        try:
            pool = make_pool({"open": silent.port, "closed": dead_port()}, "tcp: {}")
            checker = HealthChecker(pool, asyncio.get_running_loop())
            await checker.first_round()
            assert pool.by_name["open"].healthy
            assert pool.by_name["open"].health_reason == "1 check passed: TCP connect"
            assert pool.by_name["closed"].health_reason == "1 check failed: connect refused"
            assert [s.name for s in pool.candidates] == ["open"]
        finally:
            await silent.stop()

    run(scenario())


def test_stop_ends_the_checks() -> None:
    async def scenario() -> None:
        backend = await HttpBackend().start()
        pool = make_pool({"a": backend.port}, HTTP_CHECK)
        checker = HealthChecker(pool, asyncio.get_running_loop(), rng=random.Random(3))
        # A second checker on the same schedule, told apart by its Host header, is the clock.
        witness_check = "http: {path: /healthz, host: witness}"
        witness_pool = make_pool({"a": backend.port}, witness_check)
        witness = HealthChecker(witness_pool, asyncio.get_running_loop(), rng=random.Random(4))
        try:
            checker.start()
            await until(lambda: backend.hosts[f"127.0.0.1:{backend.port}"] >= 2, "two checks")
            await checker.stop()
            stopped_at = backend.hosts[f"127.0.0.1:{backend.port}"]
            witness.start()
            await until(lambda: backend.hosts["witness"] >= 4, "four witness checks")
            assert backend.hosts[f"127.0.0.1:{backend.port}"] == stopped_at
        finally:
            await checker.stop()
            await witness.stop()
            await backend.stop()

    run(scenario())


def test_a_falling_server_is_checked_at_the_fast_interval() -> None:
    async def scenario() -> None:
        backend = await HttpBackend().start()
        schedule = "interval: 2s\n      timeout: 200ms\n      fast_interval: 50ms"
        pool = make_pool({"a": backend.port}, HTTP_CHECK, fall=4, schedule=schedule)
        checker = HealthChecker(pool, asyncio.get_running_loop(), rng=random.Random(5))
        try:
            await checker.first_round()
            checker.start()
            backend.sick = True
            await until(lambda: not pool.by_name["a"].healthy, "a down", timeout=15)
            failed = [t for t, status in backend.times if status == 503]
            assert len(failed) == 4
            # Three fast intervals (150 ms) from the first failed check to the fourth; at
            # the 2 s interval it would be 6 s.
            assert failed[-1] - failed[0] < 1.5, failed
        finally:
            await checker.stop()
            await backend.stop()

    run(scenario())


def test_a_down_server_is_checked_every_down_interval_and_rises_at_the_fast_one() -> None:
    async def scenario() -> None:
        backend = await HttpBackend().start()
        backend.sick = True
        # An interval of an hour: every check seen here is a down or a fast one.
        schedule = (
            "interval: 1h\n      timeout: 200ms\n      fast_interval: 50ms\n"
            "      down_interval: 1s"
        )
        pool = make_pool({"a": backend.port}, HTTP_CHECK, rise=4, fall=1, schedule=schedule)
        checker = HealthChecker(pool, asyncio.get_running_loop(), rng=random.Random(6))
        server = pool.by_name["a"]
        try:
            await checker.first_round()
            assert not server.healthy
            checker.start()
            await until(lambda: backend.checks >= 4, "three checks of the down server")
            failed = [t for t, status in backend.times if status == 503]
            # Never sooner than the down interval (the first came from first_round, the
            # second at a random offset within the down interval).
            assert all(b - a >= 0.5 for a, b in pairwise(failed[1:])), failed
            backend.sick = False
            await until(lambda: server.healthy, "a up after rise passing checks")
            passed = [t for t, status in backend.times if status == 200]
            assert len(passed) == 4
            # Three fast intervals (150 ms) from the first pass to the fourth; at the down
            # interval it would be 3 s.
            assert passed[-1] - passed[0] < 1.5, passed
            assert server.health_reason == "4 checks passed: HTTP 200"
        finally:
            await checker.stop()
            await backend.stop()

    run(scenario())
