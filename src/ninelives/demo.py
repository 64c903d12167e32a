"""``ninelives demo``: everything on one machine, no setup.

Starts three demo backends (two in tier ``cloud-a``, one backup in ``cloud-b``), a node in
front of them, and clients that keep sending requests while the demo kills the primaries
one by one and then brings one back. It prints, phase by phase, which servers answered and
what the clients saw.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools
from rich.console import Console
from rich.table import Table

from ninelives.config import parse_config
from ninelives.node import Node
from ninelives.uptime.recorder import topology
from ninelives.uptime.report import uptime_report

WORKERS = 8


@dataclass
class Backend:
    name: str
    port: int = 0
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ninelives.demo_backend", "--name", self.name,
            "--port", str(self.port), stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 10)
        if not line.startswith(b"backend ready"):
            raise RuntimeError(f"demo backend {self.name} did not start: {line!r}")
        self.port = int(line.split(b"port=")[1])

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def wait(self) -> None:
        if self.process is not None:
            await self.process.wait()


@dataclass
class Phase:
    title: str
    served_by: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.served_by.values()) + sum(self.failures.values())


class _Response:
    """Collects one response with httptools (status, X-Backend, end of message)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.backend = ""
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-backend":
            self.backend = value.decode()

    def on_message_complete(self) -> None:
        self.done = True


async def _client(port: int, phases: list[Phase], stop: asyncio.Event) -> None:
    """Send GETs on a keep-alive connection until told to stop."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while not stop.is_set():
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            writer.write(b"GET / HTTP/1.1\r\nHost: demo\r\n\r\n")
            response = _Response()
            while not response.done:
                data = await asyncio.wait_for(reader.read(65536), 5)
                if not data:
                    raise ConnectionResetError("connection closed")
                response.parser.feed_data(data)
            # Counted in the phase in which the answer came (a request in flight when a
            # server was killed belongs to the phase that the kill started).
            status = response.parser.get_status_code()
            if status == 200:
                phases[-1].served_by[response.backend] += 1
            else:
                phases[-1].failures[f"HTTP {status}"] += 1
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            phases[-1].failures[type(exc).__name__] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def run_demo(total: int = 3000, keep_serving: bool = False) -> int:
    """Run the demo; ``total`` is about how many requests the four steady phases take."""
    console = Console()
    backends = {name: Backend(name) for name in ("a1", "a2", "b1")}
    state_dir = tempfile.mkdtemp(prefix="ninelives-demo-")
    node: Node | None = None
    try:
        for backend in backends.values():
            await backend.start()
        config = parse_config(
            f"""
node: {{name: demo, state_dir: {state_dir}}}
admin: {{listen: 127.0.0.1:0}}
listeners:
  - {{name: web, bind: 127.0.0.1:0, protocol: http, pool: app}}
pools:
  app:
    balance: roundrobin
    health: {{http: {{path: /healthz, expect: 200}}, interval: 200ms, timeout: 200ms,
              rise: 2, fall: 1}}
    tiers:
      - provider: cloud-a
        servers:
          - {{name: a1, address: 127.0.0.1:{backends["a1"].port}}}
          - {{name: a2, address: 127.0.0.1:{backends["a2"].port}}}
      - provider: cloud-b
        servers:
          - {{name: b1, address: 127.0.0.1:{backends["b1"].port}}}
""",
            source="demo",
        )
        node = Node(config)
        began = time.time()
        line = await node.start()
        console.print(f"[bold]{line}[/]")
        port = int(node.listeners[0].addresses[0].rsplit(":", 1)[1])
        pool = node.pools["app"]
        phases = [Phase("both primaries up (cloud-a)")]
        stop = asyncio.Event()
        clients = [asyncio.create_task(_client(port, phases, stop)) for _ in range(WORKERS)]
        step = total // 4

        async def after(requests: int) -> None:
            phase = phases[-1]
            await _wait_for(
                lambda: phase.requests >= requests or all(c.done() for c in clients), 60
            )

        await after(step)
        phases.append(Phase("a1 killed (SIGKILL)"))
        backends["a1"].kill()
        await after(step)
        phases.append(Phase("a2 killed too: backup tier cloud-b takes over"))
        backends["a2"].kill()
        await after(step)
        phases.append(Phase("a1 restarting (backup still serves)"))
        await backends["a1"].wait()
        await backends["a1"].start()
        await _wait_for(lambda: pool.by_name["a1"].healthy, 10)
        phases.append(Phase("a1 healthy again: traffic back on cloud-a"))
        await after(step)
        stop.set()
        await asyncio.gather(*clients)
        failed = _report(console, phases)
        await _measured(console, node, began)
        if keep_serving:
            console.print(f"serving on {node.listeners[0].addresses[0]}; Ctrl-C to stop")
            node.install_signal_handlers()
            await node.wait()
        return 1 if failed else 0
    finally:
        if node is not None:
            await node.shutdown(deadline=2)
        for backend in backends.values():
            backend.kill()
            await backend.wait()


async def _measured(console: Console, node: Node, began: float) -> None:
    """What the node itself recorded: the uptime history it keeps (issue: the uptime it
    achieved), per listener, pool and server, over the demo."""
    store = node.uptime.store
    if store is None:
        console.print(f"uptime history off: {node.uptime.problem}")
        return
    node.uptime.sample(node)
    await asyncio.to_thread(store.flush)
    now = time.time()
    report = await asyncio.to_thread(
        uptime_report, store, topology(node), node.config.uptime.rules(), began, now, now,
        ("listener", "pool", "server"),
    )
    table = Table(title=f"the uptime ninelives measured over the demo ({now - began:.1f}s)")
    for column in ("entity", "availability", "downtime", "incidents", "first cause"):
        table.add_column(column)
    for entity in report["entities"]:
        availability = entity["availability"]
        incidents = entity["incidents"]
        name = entity["name"] if entity["kind"] != "server" else (
            f"{entity.get('pool', '')}/{entity['name']}"
        )
        table.add_row(
            f"{entity['kind']} {name}",
            "-" if availability is None else f"{100 * availability:.3f}%",
            f"{entity['downtime_s'] or 0:.2f}s",
            str(entity["incident_count"]),
            incidents[0]["cause"] if incidents else "",
        )
    console.print(table)


def _report(console: Console, phases: list[Phase]) -> int:
    table = Table(title="what the clients saw")
    for column in ("phase", "requests", "served by", "failed"):
        table.add_column(column)
    failed = 0
    for phase in phases:
        served = ", ".join(f"{k} {v}" for k, v in sorted(phase.served_by.items())) or "-"
        fails = ", ".join(f"{k} {v}" for k, v in phase.failures.items()) or "0"
        failed += sum(phase.failures.values())
        table.add_row(phase.title, str(phase.requests), served, fails)
    console.print(table)
    total = sum(p.requests for p in phases)
    ok = total - failed
    console.print(
        f"{ok} of {total} requests answered ({100.0 * ok / max(total, 1):.3f}%), "
        f"{failed} failed. Health checks every 200ms; a killed server's connections are "
        "retried on a live one when nothing reached it."
    )
    return failed
