"""Active health checks: probe every server of a pool and decide whether it is up.

The decision is a pure state machine (:func:`initial`, :func:`observe`) over an immutable
:class:`HealthState`; :class:`HealthChecker` is the thin I/O shell that probes servers on a
schedule and reports verdicts to :meth:`ninelives.pool.Pool.check_result`, which moves the
server through the state machine of :mod:`ninelives.states`.

Flap damping follows HAProxy's ``rise``/``fall``: an up server goes down only after ``fall``
consecutive failed checks, a down server comes back only after ``rise`` consecutive passed
checks. The very first check of a server is decisive on its own (:func:`initial`), so a dead
server is never balanced to at startup and a live one does not wait ``rise`` intervals.

Every verdict carries a sentence saying why ("2 checks failed: connect refused"), which
``Pool.check_result`` stores as the server's reason and publishes with each transition.

How soon a server is checked again is a pure function of its state too (:func:`check_interval`):
``fast_interval`` while a streak is under way, ``down_interval`` while it is down, ``interval``
otherwise (HAProxy's fastinter/downinter).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shlex
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httptools

from ninelives.states import Signal
from ninelives.units import format_duration

if TYPE_CHECKING:
    from ninelives.config import HealthConfig, HttpCheck
    from ninelives.pool import Pool, Server


# A health response body is only searched for a substring; past this much we stop keeping it
# (a misconfigured check pointed at a large page must not make the checker hold megabytes).
MAX_BODY = 64 * 1024
READ_CHUNK = 16 * 1024
# What a command check keeps of its output (the rest is read and dropped, so that a chatty
# command never blocks on a full pipe), and how much of its first line a reason shows.
MAX_OUTPUT = 4 * 1024
MAX_DETAIL = 100
# After a command exits and its process group is killed, its pipes close at once; a
# process that left the group (setsid) may hold them open, so we stop reading after this.
OUTPUT_GRACE = 0.1
REAP_WAIT = 1.0  # a SIGKILLed shell is reaped within this (unless stuck in the kernel)


# -- the decision: a pure state machine -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthState:
    """The health of one server and the current streak of equal check results."""

    healthy: bool
    successes: int = 0  # consecutive passed checks (0 while the last check failed)
    failures: int = 0  # consecutive failed checks (0 while the last check passed)


def initial(ok: bool) -> HealthState:
    """The state after the very first check: decided by that check alone."""
    return HealthState(healthy=ok, successes=1 if ok else 0, failures=0 if ok else 1)


def observe(state: HealthState, ok: bool, rise: int, fall: int) -> tuple[HealthState, bool]:
    """Fold one check result into ``state``; return the new state and whether health changed."""
    if ok:
        successes = state.successes + 1
        if not state.healthy and successes >= rise:
            return HealthState(True, successes, 0), True
        return HealthState(state.healthy, successes, 0), False
    failures = state.failures + 1
    if state.healthy and failures >= fall:
        return HealthState(False, 0, failures), True
    return HealthState(state.healthy, 0, failures), False


def check_signal(ok: bool, changed: bool) -> Signal:
    """The input a check result is to the server's state machine (see ninelives.states)."""
    if changed:
        return Signal.RISE if ok else Signal.FALL
    return Signal.PASS if ok else Signal.FAIL


def check_interval(state: HealthState, health: HealthConfig) -> float:
    """Seconds until the next check of a server in ``state``.

    A streak under way (an up server that failed a check, a down one that passed one) is
    settled at ``fast_interval``, so a dead server is out ``fall - 1`` fast intervals after
    its first failed check and a restarted one back ``rise - 1`` after its first pass; a down
    server is probed every ``down_interval``.
    """
    if state.healthy:
        return health.fast_every if state.failures else health.interval
    return health.fast_every if state.successes else health.down_every


def reason(state: HealthState, detail: str) -> str:
    """The sentence shown for a server: its current streak and what the last check saw."""
    if state.successes:
        count, verb = state.successes, "passed"
    else:
        count, verb = state.failures, "failed"
    noun = "check" if count == 1 else "checks"
    return f"{count} {noun} {verb}: {detail}"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one probe saw: pass/fail and a short phrase ("HTTP 200", "connect refused").

    ``answered``: the server gave a verdict (an HTTP response, an exit code), passing or
    not; a refused, reset or timed-out probe did not. Panic spreads load only over servers
    that answer (see ``ninelives.panic``).
    """

    ok: bool
    detail: str
    answered: bool = True


# -- the probes -------------------------------------------------------------------------------


async def check_tcp(host: str, port: int) -> CheckResult:
    """Pass when a TCP connection can be opened; the caller bounds it with the timeout."""
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    return CheckResult(True, "TCP connect")


class _ResponseSink:
    """httptools callbacks for one health response: status line, body, completion."""

    __slots__ = ("body", "complete", "headers_complete")

    def __init__(self) -> None:
        self.body = bytearray()
        self.headers_complete = False
        self.complete = False

    def on_headers_complete(self) -> None:
        self.headers_complete = True

    def on_body(self, data: bytes) -> None:
        if len(self.body) < MAX_BODY:
            self.body += data[: MAX_BODY - len(self.body)]

    def on_message_complete(self) -> None:
        self.complete = True


def health_request(check: HttpCheck, default_host: str) -> bytes:
    host = check.host or default_host
    return (
        f"{check.method} {check.path} HTTP/1.1\r\nHost: {host}\r\n"
        "User-Agent: ninelives-health\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


async def check_http(host: str, port: int, check: HttpCheck, default_host: str) -> CheckResult:
    """Send one request and judge the status (and body substring, if configured)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(health_request(check, default_host))
        sink = _ResponseSink()
        parser = httptools.HttpResponseParser(sink)
        while not sink.complete:
            data = await reader.read(READ_CHUNK)
            if not data:
                # A response without Content-Length ends with the connection (RFC 9112 6.3).
                if sink.headers_complete:
                    break
                return CheckResult(
                    False, "connection closed before a complete response", answered=False
                )
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                return CheckResult(False, f"invalid HTTP response: {exc}", answered=False)
        status: int = parser.get_status_code()
    finally:
        writer.close()
    return judge_http(status, bytes(sink.body), check)


def judge_http(status: int, body: bytes, check: HttpCheck) -> CheckResult:
    if not check.accepts(status):
        return CheckResult(False, f"HTTP {status}, expected {check.expect}")
    if check.body is not None and check.body.encode("utf-8") not in body:
        return CheckResult(False, f'HTTP {status}, body lacks "{check.body}"')
    return CheckResult(True, f"HTTP {status}")


_PLACEHOLDER = re.compile(r"\{(host|port|server)\}")


def command_line(command: str, server: Server) -> str:
    """``command`` with ``{host}``, ``{port}`` and ``{server}`` replaced, shell-quoted; other
    braces (``awk '{print $1}'``) are left alone."""
    values = {"host": server.host, "port": str(server.port), "server": server.name}
    return _PLACEHOLDER.sub(lambda m: shlex.quote(values[m.group(1)]), command)


class _CommandOutput(asyncio.SubprocessProtocol):
    """Keeps the head of a check command's stdout and stderr; says when the command exited
    and when its pipes closed (a process it left behind may hold them open)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.heads = {1: bytearray(), 2: bytearray()}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        head = self.heads[fd]
        if len(head) < MAX_OUTPUT:  # the rest is read and dropped: no full pipe, no hang
            head += data[: MAX_OUTPUT - len(head)]

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def check_command(command: str, server: Server) -> CheckResult:
    """Run ``command`` through ``/bin/sh`` in a process group of its own; exit 0 passes.

    The caller bounds it with the check timeout: the cancellation kills the whole group
    (SIGKILL) and waits until the shell is reaped, so a hung check leaves neither a process
    nor a zombie. Whatever the command leaves running in its group when it exits is killed
    too. Exit is noticed by the protocol, not by ``Process.wait()``, which also waits for
    the pipes that a left-behind process may keep open.
    """
    loop = asyncio.get_running_loop()
    transport, output = await loop.subprocess_exec(
        lambda: _CommandOutput(loop), "/bin/sh", "-c", command_line(command, server),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    pid = transport.get_pid()
    # asyncio.wait, not a bare await: a cancelled await would cancel the future itself.
    try:
        await asyncio.wait([output.exited])
        _kill_group(pid)
        await asyncio.wait([output.closed], timeout=OUTPUT_GRACE)
    finally:
        if transport.get_returncode() is None:  # the check timed out or was stopped
            _kill_group(pid)
            await asyncio.wait([output.exited], timeout=REAP_WAIT)
        transport.close()
    code = transport.get_returncode()
    assert code is not None  # it exited
    return judge_exit(code, bytes(output.heads[1]), bytes(output.heads[2]))


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def judge_exit(code: int, stdout: bytes, stderr: bytes) -> CheckResult:
    """A command's verdict: exit 0 passes; the reason shows the exit status and the first
    line it wrote (stdout first when it passed, stderr first when it failed)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return CheckResult(False, f"killed by {name}", answered=False)
    first = first_line(stdout, stderr) if code == 0 else first_line(stderr, stdout)
    detail = f"exit {code}: {first}" if first else f"exit {code}"
    return CheckResult(code == 0, detail)


def first_line(*outputs: bytes) -> str:
    """The first non-blank line of the first output that has one, cut to MAX_DETAIL."""
    for output in outputs:
        for raw in output.splitlines():
            text = raw.decode("utf-8", "replace")
            line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
            if line:
                return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 3] + "..."
    return ""


def describe_error(exc: BaseException, timeout: float) -> str:
    """Translate what the probe raised into the phrase shown in the reason."""
    if isinstance(exc, TimeoutError):
        return f"timeout after {format_duration(timeout)}"
    if isinstance(exc, ConnectionRefusedError):
        return "connect refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError):
        return f"connect failed: {exc.strerror or exc}"
    return f"error in the check: {exc!r}"


async def probe(server: Server, health: HealthConfig) -> CheckResult:
    """Run the pool's configured check against ``server``, bounded by the check timeout."""
    try:
        async with asyncio.timeout(health.timeout):
            if health.command is not None:
                return await check_command(health.command, server)
            if health.http is not None:
                return await check_http(
                    server.host, server.port, health.http, str(server.address)
                )
            return await check_tcp(server.host, server.port)
    except Exception as exc:  # a probe that raises is a failed check, not a dead check loop
        return CheckResult(False, describe_error(exc, health.timeout), answered=False)


# -- the shell: schedule probes, record verdicts ----------------------------------------------


class HealthChecker:
    """Checks every server of one pool every ``interval`` and reports to the pool."""

    def __init__(
        self, pool: Pool, loop: asyncio.AbstractEventLoop, rng: random.Random | None = None
    ) -> None:
        self.pool = pool
        self.loop = loop
        self.rng = rng if rng is not None else random.Random()
        self.states: dict[str, HealthState] = {}
        self._tasks: dict[str, tuple[Server, asyncio.Task[None]]] = {}
        self.running = False

    @property
    def health(self) -> HealthConfig:
        return self.pool.config.health

    async def first_round(self) -> None:
        """Check every server once, concurrently, and set its initial health from that."""
        servers = list(self.pool.servers)
        results = await asyncio.gather(*(probe(s, self.health) for s in servers))
        for server, result in zip(servers, results, strict=True):
            self.record(server, result)

    def start(self) -> None:
        """Start one checking task per server, each at a random offset within its interval."""
        self.running = True
        for server in self.pool.servers:
            if server.name not in self._tasks:
                self._start(server)

    def _start(self, server: Server) -> None:
        # Jitter spreads the probes so servers (and our loop) do not see them in bursts.
        offset = self.rng.uniform(0, self.next_interval(server))
        task = self.loop.create_task(
            self._run(server, offset), name=f"health:{self.pool.name}/{server.name}"
        )
        self._tasks[server.name] = (server, task)

    def sync(self, checked: Iterable[tuple[Server, CheckResult]] = ()) -> None:
        """After a reload changed the pool's servers: forget the removed ones, take the
        first check of the new ones (made before they joined), and check them from now on."""
        current = {server.name: server for server in self.pool.servers}
        for name, (server, task) in list(self._tasks.items()):
            if current.get(name) is not server:
                task.cancel()
                del self._tasks[name]
        for name in list(self.states):
            if name not in current:
                del self.states[name]
        for server, result in checked:
            self.states.pop(server.name, None)
            self.record(server, result)
        if self.running:
            self.start()

    def cancel(self) -> None:
        """Stop checking (a pool removed by a reload); probes in flight are dropped."""
        self.running = False
        for _, task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    async def stop(self) -> None:
        tasks = [task for _, task in self._tasks.values()]
        self.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def next_interval(self, server: Server) -> float:
        state = self.states.get(server.name)
        return self.health.interval if state is None else check_interval(state, self.health)

    async def _run(self, server: Server, offset: float) -> None:
        next_at = self.loop.time() + offset
        while True:
            await asyncio.sleep(max(0.0, next_at - self.loop.time()))
            started = max(next_at, self.loop.time())
            self.record(server, await probe(server, self.health))
            # Start-to-start spacing, as HAProxy's `inter`, by the state the check left; a
            # slow check does not stack up.
            next_at = max(started + self.next_interval(server), self.loop.time())

    def record(self, server: Server, result: CheckResult) -> None:
        """Fold one check result into the server's state and tell the pool."""
        previous = self.states.get(server.name)
        if previous is None:
            state = initial(result.ok)
            step = check_signal(result.ok, changed=False)  # decisive alone (initial)
        else:
            health = self.health
            state, changed = observe(previous, result.ok, health.rise, health.fall)
            step = check_signal(result.ok, changed)
        self.states[server.name] = state
        self.pool.set_answering(server, result.answered)
        self.pool.check_result(server, step, reason(state, result.detail))
