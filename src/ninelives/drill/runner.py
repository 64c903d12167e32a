"""``ninelives drill CONFIG``: start what the config names, run one scenario, stop it all.

The backends are the config's servers: each is started as ``ninelives.demo_backend`` on
its configured loopback port, unless ``running`` says they already run (then the faulty
one is known by the pid given). The node is ``ninelives run CONFIG`` in a child process;
the load goes to the listener's address from its readiness line, the proxy's counters
come from its admin API. Every process started is stopped by its pid at the end, also
when the drill fails or is interrupted.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ninelives.address import parse_address
from ninelives.config import Config, ServerConfig
from ninelives.drill.faults import FaultMarks, FaultPlan, FaultTarget, inject
from ninelives.drill.load import LoadSpec
from ninelives.drill.observe import NinelivesCounters
from ninelives.drill.processes import DemoBackend, NodeProcess, RunningBackend
from ninelives.drill.report import DrillReport, summarize
from ninelives.drill.scenario import Timing, record

T = TypeVar("T")
RESTART_ALLOWANCE = 5.0  # seconds a restart may add to a fault, for the load's deadline


class DrillError(Exception):
    """The drill cannot run as asked (a server not in the config, not on loopback, ...)."""


@dataclass(frozen=True, slots=True)
class DrillOptions:
    fault: FaultPlan
    timing: Timing = field(default_factory=Timing)
    server: str | None = None  # NAME or POOL/NAME; the pool's first server by default
    listener: str | None = None  # the config's first listener by default
    running: bool = False  # the backends run already; ``pid`` is the faulty one's
    pid: int | None = None
    connections: int = 8
    rate: float = 400.0
    max_requests: int = 100_000
    timeout: float = 5.0
    log_dir: Path | None = None  # where the node's and backends' logs go (kept)


@dataclass(frozen=True, slots=True)
class DrillTarget:
    """What the config says the drill works on."""

    listener: str
    pool: str
    server: ServerConfig
    backends: tuple[ServerConfig, ...]  # every server of every pool, one per address


def choose_target(config: Config, listener: str | None, server: str | None) -> DrillTarget:
    """Pick the listener, the faulty server and the backends to start; say what is wrong
    in the config's terms when something does not fit."""
    names = [lc.name for lc in config.listeners]
    chosen = next((lc for lc in config.listeners if lc.name == (listener or names[0])), None)
    if chosen is None:
        raise DrillError(f'no listener named "{listener}" (listeners: {", ".join(names)})')
    pool_name, _, server_name = (server or "").rpartition("/")
    pool_name = pool_name or chosen.pool
    pool = config.pools.get(pool_name)
    if pool is None:
        raise DrillError(f'no pool named "{pool_name}" (pools: {", ".join(config.pools)})')
    servers = [s for tier in pool.tier_list() for s in tier.servers]
    faulty = next((s for s in servers if s.name == server_name), None) if server_name else (
        servers[0]
    )
    if faulty is None:
        known = ", ".join(s.name for s in servers)
        raise DrillError(f'no server named "{server_name}" in pool "{pool_name}" ({known})')
    backends: dict[str, ServerConfig] = {}
    for pool_config in config.pools.values():
        for tier in pool_config.tier_list():
            for s in tier.servers:
                backends.setdefault(str(s.address), s)
    return DrillTarget(chosen.name, pool_name, faulty, tuple(backends.values()))


def check_startable(backends: tuple[ServerConfig, ...]) -> None:
    """The drill starts backends only on fixed loopback ports."""
    for s in backends:
        if not s.address.is_loopback or s.address.port == 0:
            raise DrillError(
                f"server {s.name} is at {s.address}: the drill starts backends only on a "
                "loopback address with a fixed port (use --running and --pid for others)"
            )


def connect_address(listen: str) -> tuple[str, int]:
    """Where a client reaches a listener bound to ``listen`` (a wildcard means loopback)."""
    address = parse_address(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address.host, address.host)
    return host, address.port


@asynccontextmanager
async def _log_dir(wanted: Path | None) -> AsyncIterator[Path]:
    if wanted is not None:
        wanted.mkdir(parents=True, exist_ok=True)
        yield wanted
        return
    made = Path(tempfile.mkdtemp(prefix="ninelives-drill-"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


async def run_drill(config_path: Path, config: Config, options: DrillOptions) -> DrillReport:
    """Start the backends and the node, run the scenario, stop everything; the report."""
    target = choose_target(config, options.listener, options.server)
    if options.running:
        if options.pid is None:
            raise DrillError("--running needs --pid: the pid of the server to fault")
    else:
        check_startable(target.backends)
    async with _log_dir(options.log_dir) as logs:
        backends = {
            str(s.address): DemoBackend(s.name, s.address.host, s.address.port, logs)
            for s in ([] if options.running else target.backends)
        }
        node = NodeProcess(config_path, logs)
        try:
            await asyncio.gather(*(b.start() for b in backends.values()))
            ready = await node.start()
            listen = ready.listeners.get(target.listener)
            if not listen:
                raise DrillError(f"the readiness line names no listener {target.listener}")
            host, port = connect_address(listen[0])
            faulty: FaultTarget = (
                RunningBackend(target.server.name, options.pid)
                if options.pid is not None and options.running
                else backends[str(target.server.address)]
            )
            spec = LoadSpec(
                host, port, options.connections, options.rate, options.max_requests,
                options.timeout,
            )

            async def fault(marks: FaultMarks) -> None:
                await inject(options.fault, faulty, marks)

            recording = await record(
                spec, options.timing, fault, options.fault.duration + RESTART_ALLOWANCE,
                server=target.server.name,
                counters=NinelivesCounters(ready.admin, target.pool),
            )
        finally:
            await node.stop()
            await asyncio.gather(*(b.stop() for b in backends.values()))
            if options.running and options.pid is not None:
                RunningBackend(target.server.name, options.pid).signal(signal.SIGCONT)
    return summarize(recording, f"{host}:{port}", options.fault.describe())


async def interruptible(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; SIGTERM or SIGINT cancels it, so that its clean-up (stopping every
    process it started) runs, and then raises KeyboardInterrupt."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    signalled: list[int] = []

    def cancel(sig: int) -> None:
        signalled.append(sig)
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, cancel, sig)
    try:
        return await task
    except asyncio.CancelledError:
        if signalled:
            raise KeyboardInterrupt(f"signal {signalled[0]}") from None
        raise
