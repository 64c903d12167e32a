"""One ninelives node: its pools, listeners, health checks and admin API, start to stop.

The life cycle reads as ``start()``, ``wait()``, ``shutdown()``: start binds everything and
prints the readiness line, wait returns on SIGTERM/SIGINT, shutdown stops accepting and
lets in-flight requests finish within a deadline.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from typing import Any

from ninelives import __version__, runtime_state
from ninelives.admin import start_admin
from ninelives.config import Config, ListenerConfig
from ninelives.health import HealthChecker
from ninelives.http.context import HttpContext, Route
from ninelives.http.downstream import Downstream
from ninelives.http.idle import close_idle_clients, close_idle_upstreams, expire_responses
from ninelives.listener import ListenerStats
from ninelives.pool import Pool
from ninelives.tcp import Downstream as TcpDownstream
from ninelives.tcp import tcp_protocol_factory

log = logging.getLogger("ninelives.node")

SHUTDOWN_DEADLINE = 15.0  # seconds in-flight requests get to finish on SIGTERM
LISTEN_BACKLOG = 4096
SWEEP_TICK = 0.05  # seconds: how late a response timeout may fire at most


class Node:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.name = config.node.name
        self.admin_token = config.admin.token
        self.started_at = time.time()
        self.pools = {name: Pool(name, pool_config) for name, pool_config in config.pools.items()}
        self.listeners = [
            ListenerStats(lc.name, lc.protocol, lc.pool) for lc in config.listeners
        ]
        self.admin_address = ""
        # Drain, maint and weights set at runtime survive a restart (kept under state_dir).
        self.state_path = config.node.state_dir / runtime_state.FILE_NAME
        for line in runtime_state.restore(self.state_path, self.pools):
            log.info("%s", line)
        for pool in self.pools.values():
            pool.on_admin_change.append(self._save_state)
        loop = asyncio.get_running_loop()
        self.checkers = [HealthChecker(pool, loop) for pool in self.pools.values()]
        self.contexts: list[HttpContext] = []
        self.tcp_connections: set[TcpDownstream] = set()
        self.servers: list[asyncio.Server] = []
        self.admin: asyncio.Server | None = None
        self.ready = False
        self.stopping = asyncio.Event()
        self.sweeper: asyncio.Task[None] | None = None

    # -- start -----------------------------------------------------------------------------

    async def start(self) -> str:
        """Check every server once, bind every listener and the admin API; return the
        readiness line (the caller prints it)."""
        loop = asyncio.get_running_loop()
        # One round of checks before serving: a dead server is never taken for a live one.
        await asyncio.gather(*(checker.first_round() for checker in self.checkers))
        for lc, stats in zip(self.config.listeners, self.listeners, strict=True):
            factory = self._factory(lc, stats, loop)
            for address in lc.bind:
                server = await loop.create_server(
                    factory, address.host, address.port,
                    reuse_address=True, backlog=LISTEN_BACKLOG,
                )
                self.servers.append(server)
                stats.addresses.extend(_bound(server))
        self.admin = await start_admin(self, self.config.admin.listen)
        self.admin_address = ",".join(_bound(self.admin))
        for checker in self.checkers:
            checker.start()
        self.sweeper = loop.create_task(self._sweep())
        self.ready = True
        parts = [f"ninelives ready node={self.name}", f"admin={self.admin_address}"]
        parts += [f"{s.name}={','.join(s.addresses)}" for s in self.listeners]
        return " ".join(parts)

    def _factory(
        self, lc: ListenerConfig, stats: ListenerStats, loop: asyncio.AbstractEventLoop
    ) -> Any:
        pool = self.pools[lc.pool]
        if lc.protocol == "tcp":
            return tcp_protocol_factory(stats, pool, loop, self.tcp_connections)
        routes = tuple(
            Route(
                host=r.match.host.lower().encode() if r.match.host else None,
                path_prefix=r.match.path_prefix.encode() if r.match.path_prefix else None,
                pool=self.pools[r.pool],
            )
            for r in lc.routes
        )
        ctx = HttpContext(loop=loop, stats=stats, pool=pool, routes=routes)
        self.contexts.append(ctx)
        return lambda: Downstream(ctx)

    async def _sweep(self) -> None:
        """Time out what is overdue: responses (every tick), idle connections (every second,
        or a quarter of the shortest idle timeout).

        One sweep for all connections instead of a timer per request: a timer costs about
        2 us to arm and cancel, a queue entry a tenth of that.
        """
        loop = asyncio.get_running_loop()
        idle_period = min([1.0] + [p.config.timeouts.idle / 4 for p in self.pools.values()])
        next_idle_sweep = 0.0
        while True:
            await asyncio.sleep(SWEEP_TICK)
            now = loop.time()
            for pool in self.pools.values():
                expire_responses(pool, now)
                pool.expire_ejections(now)
                pool.advance_ramps(now)
            if now < next_idle_sweep:
                continue
            next_idle_sweep = now + idle_period
            for ctx in self.contexts:
                close_idle_clients(ctx, now)
            for pool in self.pools.values():
                close_idle_upstreams(pool, now)

    # -- run and stop ----------------------------------------------------------------------

    def is_ready(self) -> bool:
        return self.ready and not self.stopping.is_set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)

    async def wait(self) -> None:
        await self.stopping.wait()

    async def shutdown(self, deadline: float = SHUTDOWN_DEADLINE) -> None:
        """Stop accepting, let in-flight requests finish within ``deadline``, then close."""
        self.stopping.set()
        self.ready = False
        for server in self.servers:
            server.close()
        for ctx in self.contexts:
            for conn in list(ctx.connections):
                conn.shutdown()
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while loop.time() < end and self._open_connections():
            await asyncio.sleep(SWEEP_TICK)
        for ctx in self.contexts:
            for conn in list(ctx.connections):
                conn.transport.abort()
        for tcp in list(self.tcp_connections):
            tcp.transport.abort()  # a TCP stream has no request boundary to stop at
            if tcp.upstream is not None:
                tcp.upstream.transport.abort()
        if self.sweeper is not None:
            self.sweeper.cancel()
        for checker in self.checkers:
            await checker.stop()
        if self.admin is not None:
            self.admin.close()
        for pool in self.pools.values():
            for member in pool.servers:
                for upstream in member.idle:
                    upstream.transport.close()
                member.idle.clear()

    def _save_state(self, pool: Pool) -> None:
        try:
            runtime_state.save(self.state_path, self.pools.values())
        except OSError as exc:
            log.error("could not save server state to %s: %s", self.state_path, exc)

    def _open_connections(self) -> bool:
        return bool(self.tcp_connections) or any(ctx.connections for ctx in self.contexts)

    def status(self) -> dict[str, Any]:
        return {
            "node": self.name,
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 3),
            "ready": self.is_ready(),
            "admin": self.admin_address,
            "listeners": [s.status() for s in self.listeners],
            "pools": [p.status() for p in self.pools.values()],
        }


def _bound(server: asyncio.Server) -> list[str]:
    out = []
    for sock in server.sockets:
        host, port = sock.getsockname()[:2]
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return out


async def serve(config: Config) -> None:
    """Run a node until SIGTERM/SIGINT; print the readiness line once it serves."""
    node = Node(config)
    node.install_signal_handlers()
    try:
        line = await node.start()
    except OSError as exc:
        await node.shutdown(deadline=0)
        raise NodeStartError(f"cannot bind: {exc}") from exc
    # Objects made at start-up live as long as the node: keep the cyclic GC from scanning
    # them again and again under load.
    gc.freeze()
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    log.info("%s", line)
    await node.wait()
    log.info("stopping: finishing in-flight requests (deadline %ss)", SHUTDOWN_DEADLINE)
    await node.shutdown()
    log.info("stopped")


class NodeStartError(Exception):
    """The node could not start (an address in use, a permission refused)."""
