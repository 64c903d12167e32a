"""The processes a drill starts: demo backends and the ninelives node, each waited on
through its one readiness line (with a deadline) and stopped by its pid.

A backend the drill started can be restarted on its port (``kill`` and ``flap`` bring it
back that way) and slowed down at runtime (``POST /admin/delay``). A backend that was
already running is known only by its pid: it can be signalled, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

READY_TIMEOUT = 15.0  # seconds a process may take to print its readiness line
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
LOG_TAIL_LINES = 40


class ProcessError(Exception):
    """A process of the drill did not start; the message carries the tail of its log."""


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    """A process started by the drill: its log file, its pid, its readiness line."""

    label: str
    argv: list[str]
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    ready_line: str = ""
    _log: IO[bytes] | None = field(default=None, repr=False)
    _drain: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.label} was not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, prefix: str, timeout: float = READY_TIMEOUT) -> str:
        """Start the process; return its first stdout line once it starts with ``prefix``."""
        self._log = self.log_path.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=self._log, env=env,
        )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            await self.stop()
            raise ProcessError(
                f"{self.label}: no readiness line within {timeout:g}s\n{log_tail(self.log_path)}"
            ) from None
        self.ready_line = line.decode(errors="replace").strip()
        if not self.ready_line.startswith(prefix):
            await self.stop()
            raise ProcessError(
                f"{self.label}: expected a line starting {prefix!r}, got "
                f"{self.ready_line!r}\n{log_tail(self.log_path)}"
            )
        # Later stdout goes to the log, so that a full pipe never blocks the process.
        self._drain = asyncio.create_task(self._copy_stdout())
        return self.ready_line

    async def _copy_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            if self._log is not None and not self._log.closed:
                self._log.write(line)
                self._log.flush()

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    async def wait(self) -> None:
        if self.process is not None:
            await self.process.wait()
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, STOP_TIMEOUT)
            self._drain = None

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGCONT (a stopped process cannot act on SIGTERM), SIGTERM, then SIGKILL after
        ``timeout``; by pid."""
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.wait()), timeout)
            except TimeoutError:
                self.signal(signal.SIGKILL)
        await self.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class DemoBackend:
    """A ``ninelives.demo_backend`` process on a fixed port, restartable on that port."""

    restartable = True

    def __init__(self, name: str, host: str, port: int, log_dir: Path) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.log_path = log_dir / f"backend-{name}.log"
        self.child: Child | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.child is not None, f"backend {self.name} was not started"
        return self.child.pid

    async def start(self) -> None:
        self.starts += 1
        argv = [sys.executable, "-m", "ninelives.demo_backend", "--name", self.name,
                "--host", self.host, "--port", str(self.port)]
        self.child = Child(f"backend {self.name} ({self.address})", argv, self.log_path)
        line = await self.child.start("backend ready")
        self.port = int(line.rsplit("port=", 1)[1])

    def signal(self, sig: signal.Signals) -> None:
        if self.child is not None:
            self.child.signal(sig)

    async def kill(self) -> None:
        """SIGKILL by pid, and wait until it is gone (its port is free again then)."""
        if self.child is not None:
            self.child.signal(signal.SIGKILL)
            await self.child.wait()

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def set_delay(self, seconds: float) -> bool:
        """Add ``seconds`` of latency to every later answer (``POST /admin/delay``)."""
        request = (
            f"POST /admin/delay?ms={seconds * 1000:g} HTTP/1.1\r\nHost: {self.address}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), STOP_TIMEOUT)
        finally:
            writer.close()
        if not answer.startswith(b"HTTP/1.1 200"):
            raise ProcessError(f"backend {self.name}: /admin/delay answered {answer[:80]!r}")
        return True

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop()


class RunningBackend:
    """A backend the drill did not start: it knows its pid and can signal it, no more."""

    restartable = False

    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self._pid = pid

    @property
    def pid(self) -> int:
        return self._pid

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, sig)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)

    async def restart(self) -> None:
        raise ProcessError(f"backend {self.name} (pid {self._pid}) was not started by the drill")

    async def set_delay(self, seconds: float) -> bool:
        return False

    async def stop(self) -> None:
        # Not ours to stop; a drill that paused it has let it go on already.
        self.signal(signal.SIGCONT)


@dataclass(frozen=True, slots=True)
class Ready:
    """What a node's readiness line says: ``ninelives ready node=N admin=H:P web=H:P``."""

    node: str
    admin: str
    listeners: dict[str, list[str]]


def parse_ready_line(line: str) -> Ready:
    words = line.split()
    if words[:2] != ["ninelives", "ready"]:
        raise ProcessError(f"not a ninelives readiness line: {line!r}")
    fields = dict(word.split("=", 1) for word in words[2:] if "=" in word)
    node = fields.pop("node", "")
    admin = fields.pop("admin", "")
    return Ready(node, admin, {k: v.split(",") for k, v in fields.items()})


class NodeProcess:
    """``ninelives run CONFIG`` as a child process, known by its readiness line."""

    def __init__(self, config: Path, log_dir: Path, label: str = "node") -> None:
        argv = [sys.executable, "-m", "ninelives.cli", "run", str(config)]
        self.child = Child(f"ninelives {label} ({config})", argv, log_dir / f"{label}.log")
        self.ready: Ready | None = None

    @property
    def pid(self) -> int:
        return self.child.pid

    async def start(self) -> Ready:
        self.ready = parse_ready_line(await self.child.start("ninelives ready"))
        return self.ready

    async def stop(self) -> None:
        await self.child.stop()
