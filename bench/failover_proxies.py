"""HAProxy and ninelives as the failover benchmark runs them: the same three servers, the
same checks, timeouts and retries; started fresh for every scenario and stopped by pid.

Both check ``GET /`` every 1 s (ninelives' default interval) with a 500 ms timeout, rise
2, fall 2; connect timeout 1 s, server (response) timeout 30 s, client idle 60 s. Both
retry twice on another server: HAProxy with ``retries 2``, ``option redispatch 1`` and
``retry-on all-retryable-errors``, ninelives with its default ``retries``. Anything else
is each proxy's default (ninelives ejects outliers by default; HAProxy's ``observe``
is off by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ninelives.drill.observe import NinelivesCounters, ServerCounters
from ninelives.drill.processes import DemoBackend, NodeProcess, ProcessError, log_tail
from ninelives.drill.runner import connect_address

READY_DEADLINE_S = 20.0  # for a proxy to listen and find every server up
STOP_DEADLINE_S = 5.0
POLL_S = 0.05
POOL = "app"


def haproxy_config(port: int, servers: Mapping[str, int], stats_socket: Path) -> str:
    lines = "\n".join(
        f"    server {name} 127.0.0.1:{server_port} check" for name, server_port in servers.items()
    )
    return f"""global
    nbthread 1
    stats socket {stats_socket} mode 600 level admin

defaults
    mode http
    option http-keep-alive
    timeout connect 1s
    timeout client 60s
    timeout server 30s
    timeout check 500ms
    retries 2
    option redispatch 1
    retry-on all-retryable-errors

frontend web
    bind 127.0.0.1:{port}
    default_backend {POOL}

backend {POOL}
    balance roundrobin
    option httpchk GET /
    http-check expect status 200
    default-server inter 1s rise 2 fall 2
{lines}
"""


def ninelives_config(servers: Mapping[str, int], state_dir: Path) -> str:
    lines = "\n".join(
        f"      - {{name: {name}, address: 127.0.0.1:{port}}}" for name, port in servers.items()
    )
    return f"""node: {{name: bench, state_dir: {state_dir}}}
admin: {{listen: 127.0.0.1:0}}
listeners:
  - {{name: web, bind: 127.0.0.1:0, protocol: http, pool: {POOL}}}
pools:
  {POOL}:
    balance: roundrobin
    health: {{http: {{path: /, expect: 200}}, interval: 1s, timeout: 500ms, rise: 2, fall: 2}}
    timeouts: {{connect: 1s, response: 30s, idle: 60s}}
    retries: {{attempts: 2}}
    servers:
{lines}
"""


class HaproxyCounters:
    """``stot`` per server of one backend, from HAProxy's stats socket (``show stat``).
    ``stot`` counts every session assigned to the server, so a try that failed to connect
    and was redispatched counts too."""

    def __init__(self, socket_path: Path, backend: str = POOL) -> None:
        self.socket_path = socket_path
        self.backend = backend

    async def show_stat(self) -> list[dict[str, str]]:
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        try:
            writer.write(b"show stat\n")
            data = await asyncio.wait_for(reader.read(), 2.0)
        except TimeoutError:
            raise OSError("no answer from the stats socket within 2s") from None
        finally:
            writer.close()
        text = data.decode(errors="replace")
        if not text.startswith("# "):
            raise ValueError(f"unexpected answer to show stat: {text[:80]!r}")
        return [
            row for row in csv.DictReader(io.StringIO(text[2:]))
            if row.get("pxname") == self.backend and row.get("svname") not in ("BACKEND", None)
        ]

    async def read(self) -> Mapping[str, int]:
        return {row["svname"]: int(row["stot"]) for row in await self.show_stat()}

    async def all_up(self) -> bool:
        try:
            rows = await self.show_stat()
        except (OSError, ValueError):
            return False
        return bool(rows) and all(row["status"] == "UP" for row in rows)


class Haproxy:
    """``haproxy -W -db -f CFG``: the master stays in the foreground (SIGUSR2 reloads it,
    starting a new worker that takes the listening socket while the old one finishes its
    connections). In its own session, so that stopping the group stops the workers."""

    name = "haproxy"
    reload_signal: signal.Signals | None = signal.SIGUSR2
    reload_note = ""

    def __init__(self, tmp: Path, servers: Mapping[str, int], port: int) -> None:
        self.tmp = tmp
        self.config = tmp / "haproxy.cfg"
        self.stats = tmp / "haproxy.sock"
        self.config.write_text(haproxy_config(port, servers, self.stats))
        self.log_path = tmp / "haproxy.log"
        self.address = ("127.0.0.1", port)
        self.counters = HaproxyCounters(self.stats)
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                ["haproxy", "-W", "-db", "-f", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_DEADLINE_S
        while not await self.counters.all_up():
            if self.popen.poll() is not None:
                raise ProcessError(f"haproxy exited with {self.popen.returncode}\n"
                                   f"{log_tail(self.log_path)}")
            if loop.time() > deadline:
                raise ProcessError(f"haproxy: not every server up within {READY_DEADLINE_S:g}s"
                                   f"\n{log_tail(self.log_path)}")
            await asyncio.sleep(POLL_S)

    async def stop(self) -> None:
        if self.popen is None:
            return
        for sig in (signal.SIGCONT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_DEADLINE_S
        while self.popen.poll() is None and loop.time() < deadline:
            await asyncio.sleep(POLL_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # a worker may outlive its master
        self.popen.wait(STOP_DEADLINE_S)


def ninelives_reloads() -> bool:
    """Does this ninelives build reload its config (``ninelives reload``, SIGHUP)? Without
    it, SIGHUP would end the node."""
    done = subprocess.run(
        [sys.executable, "-m", "ninelives.cli", "reload", "--help"],
        capture_output=True, check=False,
    )
    return done.returncode == 0


class Ninelives:
    """``ninelives run CFG`` (a child of this interpreter), known by its readiness line."""

    name = "ninelives"

    def __init__(self, tmp: Path, servers: Mapping[str, int], reloads: bool) -> None:
        self.config = tmp / "ninelives.yaml"
        self.config.write_text(ninelives_config(servers, tmp / "state"))
        self.node = NodeProcess(self.config, tmp, "ninelives")
        self.log_path = self.node.child.log_path
        self.address = ("", 0)
        self.counters: ServerCounters | None = None
        self.reload_signal: signal.Signals | None = signal.SIGHUP if reloads else None
        self.reload_note = "" if reloads else "reload not supported by this build"

    @property
    def pid(self) -> int:
        return self.node.pid

    async def start(self) -> None:
        ready = await self.node.start()
        self.address = connect_address(ready.listeners["web"][0])
        self.counters = NinelivesCounters(ready.admin, POOL)

    async def stop(self) -> None:
        await self.node.stop()


async def start_backends(tmp: Path, ports: Mapping[str, int]) -> list[DemoBackend]:
    backends = [DemoBackend(name, "127.0.0.1", port, tmp) for name, port in ports.items()]
    try:
        await asyncio.gather(*(b.start() for b in backends))
    except BaseException:
        await asyncio.gather(*(b.stop() for b in backends))
        raise
    return backends
