"""Bounded GET load: keep-alive client connections that record what every request saw.

The load is open: request number ``k`` is due at ``start + k / rate`` whatever happened
to the ones before it, as with many independent clients. A due request takes the idle
connection that has waited longest (so that ``connections`` connections share the load),
or opens one more when all are busy, up to ``max_connections``; beyond that it waits for
one. Its latency counts from the moment it was due, so a request that queued behind a
hung server is as slow as its client found it (no coordinated omission). The load stops
by itself after ``max_requests`` requests or at its deadline, or earlier when told to;
requests in flight then finish or time out.

A GET sent on a reused connection that the server had already closed (no byte of an
answer came) goes again on a fresh connection, once, as real clients do; the sample says
it was ``resent`` and it is not a failure.

What a request saw is a :class:`Sample`: when it was due, when it ended, its outcome and
the server that answered (the ``X-Backend`` header that ``ninelives.demo_backend`` sets).
Failures are named by what the client noticed, not by what the proxy may have meant:

- ``connect``: the listener refused or did not take the connection,
- ``reset``: the connection was reset (or a write failed) before the whole answer came,
- ``closed``: the connection was closed cleanly before the whole answer came,
- ``timeout``: no whole answer within ``timeout`` of the moment it was due,
- ``bad response``: bytes that are not an HTTP/1.1 response,
- ``HTTP 502`` and the like: an answer whose status is not 2xx or 3xx.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import httptools

# Every time a drill records comes from this clock. The event loop's own (uvloop's) counts
# whole milliseconds, too coarse for one request on loopback.
clock = time.monotonic

OK = "ok"
READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Where to send GETs and how many. Times are seconds."""

    host: str
    port: int
    connections: int = 8  # keep-alive connections that share the load
    rate: float = 400.0  # requests per second
    max_requests: int = 100_000
    timeout: float = 5.0  # for one request, from the moment it was due
    max_connections: int = 512  # more are opened while the first ones are busy
    path: str = "/"

    def __post_init__(self) -> None:
        if not (
            1 <= self.connections <= self.max_connections
            and self.rate > 0 and self.max_requests >= 1 and self.timeout > 0
        ):
            raise ValueError(
                "load needs 1 <= connections <= max_connections, a positive rate, at least "
                f"one request and a positive timeout, got {self}"
            )


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: due (sent then, unless it waited for a connection) and ended, on
    :data:`clock`; ``kind`` is ``ok`` or the failure (see the module docstring);
    ``backend`` is the server that answered, if any."""

    sent: float
    ended: float
    kind: str
    backend: str = ""
    resent: bool = False  # sent again on a fresh connection (see _Connection.get)

    @property
    def ok(self) -> bool:
        return self.kind == OK

    @property
    def latency(self) -> float:
        return self.ended - self.sent


class ClientFailure(Exception):
    """A request failed; ``kind`` names how (``reset``, ``closed``, ...), ``answered``
    whether any byte of the answer had come."""

    def __init__(self, kind: str, answered: bool = False) -> None:
        super().__init__(kind)
        self.kind = kind
        self.answered = answered


class _Answer:
    """httptools callbacks for one response: its X-Backend header and its end."""

    def __init__(self) -> None:
        self.backend = ""
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-backend":
            self.backend = value.decode("latin-1")

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    """One keep-alive client connection; reopened after a failure or a ``close``."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.request = (
            f"GET {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
            "User-Agent: ninelives-drill\r\n\r\n"
        ).encode("latin-1")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self) -> tuple[int, str, bool]:
        """Send one GET and read the whole answer: (status, X-Backend, resent).

        A reused connection that the server had closed before a byte of the answer came
        back is not a failure to a client: the GET goes again on a fresh connection, once
        (RFC 9112 section 9.3.1; curl, Go's net/http and browsers do so). ``resent`` says
        it happened."""
        reused = self.writer is not None
        try:
            status, backend = await self._exchange()
        except ClientFailure as exc:
            if not (reused and exc.kind in ("closed", "reset") and not exc.answered):
                raise
            self.close()
            status, backend = await self._exchange()
            return status, backend, True
        return status, backend, False

    async def _exchange(self) -> tuple[int, str]:
        if self.writer is None:
            try:
                self.reader, self.writer = await asyncio.open_connection(
                    self.spec.host, self.spec.port
                )
            except OSError:
                raise ClientFailure("connect") from None
        assert self.reader is not None
        answer = _Answer()
        parser: Any = httptools.HttpResponseParser(answer)
        answered = False
        try:
            self.writer.write(self.request)
            while not answer.complete:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    raise ClientFailure("closed", answered)
                answered = True
                parser.feed_data(data)
        except OSError:
            raise ClientFailure("reset", answered) from None
        except httptools.HttpParserError:
            raise ClientFailure("bad response", answered) from None
        if not parser.should_keep_alive():
            self.close()
        return parser.get_status_code(), answer.backend

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None


class Load:
    """The load on one listener. ``run()`` returns once every request has ended."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.samples: list[Sample] = []
        self.stop = asyncio.Event()
        self.started = 0.0
        self.slots: list[_Connection] = []
        self.idle: deque[_Connection] = deque()
        self.waiting: deque[asyncio.Future[_Connection]] = deque()

    async def run(self, deadline: float) -> list[Sample]:
        """Send until told to stop, until ``max_requests`` were sent, or until ``deadline``
        on :data:`clock`, whichever is first; then wait for the requests in flight."""
        spec = self.spec
        self.started = clock()
        in_flight: set[asyncio.Task[None]] = set()
        try:
            for k in range(spec.max_requests):
                due = self.started + k / spec.rate
                wait = due - clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self.stop.is_set() or clock() >= deadline:
                    break
                task = asyncio.create_task(self._request(due))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.gather(*in_flight)
        finally:
            for task in in_flight:
                task.cancel()
            for conn in self.slots:
                conn.close()
        return self.samples

    async def _acquire(self) -> _Connection:
        if self.idle and len(self.slots) >= self.spec.connections:
            return self.idle.popleft()
        if len(self.slots) < self.spec.max_connections:
            conn = _Connection(self.spec)
            self.slots.append(conn)
            return conn
        waiter: asyncio.Future[_Connection] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # handed over as time ran out: pass it on
            raise

    def _release(self, conn: _Connection) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    async def _request(self, due: float) -> None:
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(max(0.0, due + self.spec.timeout - clock())):
                conn = await self._acquire()
                status, backend, resent = await conn.get()
        except ClientFailure as exc:
            sample = Sample(due, clock(), exc.kind)
            if conn is not None:
                conn.close()
        except TimeoutError:
            sample = Sample(due, clock(), "timeout")
            if conn is not None:
                conn.close()
        else:
            kind = OK if 200 <= status < 400 else f"HTTP {status}"
            sample = Sample(due, clock(), kind, backend, resent)
        self.samples.append(sample)
        if conn is not None:
            self._release(conn)
