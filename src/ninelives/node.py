"""One ninelives node: its pools, listeners, health checks and admin API, start to stop.

The life cycle reads as ``start()``, ``wait()``, ``shutdown()``: start binds everything and
prints the readiness line, wait returns on SIGTERM/SIGINT, shutdown stops accepting and
lets in-flight requests finish within a deadline. ``reload()`` (SIGHUP, the admin API)
applies the config file again (see :mod:`ninelives.reload`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ninelives import __version__, runtime_state
from ninelives.cluster.coordinator import CoordinatorError, Member
from ninelives.cluster.coverage import Coverage, peers_at_start, served_from
from ninelives.cluster.ha import HaLoop, SwitchoverError, start_cluster
from ninelives.cluster.shared import SharedState
from ninelives.config import Config, ConfigError, ReloadError, load_config
from ninelives.events import Event, EventLog
from ninelives.health import HealthChecker
from ninelives.http import build as http_build
from ninelives.http.context import HttpContext
from ninelives.http.idle import close_idle_clients, close_idle_upstreams, expire_responses
from ninelives.listener import Binding, ListenerStats
from ninelives.pool import Pool, Server
from ninelives.reload import Front, apply
from ninelives.tcp import Downstream as TcpDownstream
from ninelives.uptime.recorder import UptimeRecorder
from ninelives.uptime.watch import INCIDENT_KINDS, SloWatch

log = logging.getLogger("ninelives.node")

SHUTDOWN_DEADLINE = 15.0  # seconds in-flight requests get to finish on SIGTERM
SWEEP_TICK = 0.05  # seconds: how late a response timeout may fire at most


class Node:
    def __init__(self, config: Config, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path  # read again on reload; None: reload refused
        self.name = config.node.name
        self.admin_token = config.admin.token
        self.started_at = time.time()
        self.loop = asyncio.get_running_loop()
        self.events = EventLog()
        # Filled by reload.apply at start and changed by every reload.
        self.pools: dict[str, Pool] = {}
        self.checkers: dict[str, HealthChecker] = {}
        self.fronts: dict[str, Front] = {}
        self.bindings: dict[str, Binding] = {}
        self.listeners: list[ListenerStats] = []
        self.contexts: list[HttpContext] = []  # every HTTP listener's, while it has clients
        self.retired: list[Server] = []  # servers removed by a reload, finishing requests
        self.tcp_connections: set[TcpDownstream] = set()
        self.admin: asyncio.Server | None = None
        self.admin_address = ""
        # Drain, maint and weights set at runtime survive a restart (kept under state_dir).
        self.state_path = config.node.state_dir / runtime_state.FILE_NAME
        self.started = False
        self.ready = False
        self.stopping = asyncio.Event()
        self.reloading = asyncio.Lock()
        self.reloads = 0
        self.sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        # The uptime history (under the state_dir read at start; opened by start()).
        self.uptime = UptimeRecorder(None, "the node has not started")
        self.cluster: HaLoop | None = None  # with a cluster: section, once started
        self.shared: SharedState | None = None  # active-active: what the nodes share
        # SLO alerts and incidents to the webhooks (with the store, once started).
        self.slo = SloWatch(None, lambda: self.config)

    # -- start -----------------------------------------------------------------------------

    async def start(self) -> str:
        """Check every server once, bind every listener and the admin API; return the
        readiness line (the caller prints it)."""
        served: Coverage | None = None
        if self.config.cluster is not None:  # did another node serve while this one was down?
            members = await peers_at_start(self.config.cluster, self.name)
            served = served_from(members, self.name, self.config.cluster.mode)
        self.uptime = UptimeRecorder.open(self.config, self.events, served)
        self.slo = SloWatch(self.uptime.store, lambda: self.config)
        self.events.subscribe(self.slo.on_event, INCIDENT_KINDS)
        cluster = self.config.cluster
        if cluster is not None and cluster.mode == "active-active":
            try:  # first: the pools take the shared settings as they are made
                self.shared = await SharedState.open(
                    cluster, self.name, lambda: self.pools, list(self.config.pools))
            except CoordinatorError as exc:
                raise ReloadError(f"cluster: cannot read the shared settings: {exc}") from exc
        for line in await apply(self, self.config):
            log.info("%s", line)
        self.started = True
        for checker in self.checkers.values():
            checker.start()
        self.sweeper = self.loop.create_task(self._sweep())
        self.ready = True
        self.uptime.serving(self)
        if self.config.cluster is not None:
            try:
                await self._start_cluster()
            except CoordinatorError as exc:
                raise ReloadError(f"cluster: cannot open the coordinator: {exc}") from exc
        self.slo.start(self)
        parts = [f"ninelives ready node={self.name}", f"admin={self.admin_address}"]
        parts += [f"{s.name}={','.join(s.addresses)}" for s in self.listeners]
        return " ".join(parts)

    async def _start_cluster(self) -> None:
        """Join the cluster; in active-active, watch the shared settings and share health
        views."""
        config = self.config.cluster
        assert config is not None
        self.cluster = await start_cluster(
            config, self.name, self.admin_address, self.events,
            lambda: None if self.is_ready() else "the node is starting or stopping",
            view=lambda: self.shared.view() if self.shared is not None else {},
            on_members=self._members_seen,
        )
        if self.shared is not None:
            await self.shared.start()
            self.events.subscribe(self._server_changed, ("server",))
            self.cluster.touch()

    def _members_seen(self, members: list[Member]) -> None:
        if self.shared is not None:
            self.shared.members_seen(members)

    def _server_changed(self, event: Event) -> None:
        """A server's state changed here: the member record's health view may have."""
        if event.kind == "server" and self.cluster is not None:
            self.cluster.touch()

    async def reload(self) -> list[str]:
        """Read the config file again and apply it; one sentence per change.

        Raises ConfigError (every problem; nothing changed), ReloadError (valid but cannot
        be applied, e.g. an address in use; nothing changed)."""
        if self.config_path is None:
            raise ReloadError("this node was not started from a config file")
        async with self.reloading:
            config = load_config(self.config_path)
            changes = await apply(self, config)
            if self.shared is not None and self.cluster is not None:
                # Pools and servers the config added take the other nodes' views (and the
                # shared settings, which the commit applied, are read again).
                self.shared.members_seen(self.cluster.members)
                try:
                    await self.shared.sync()
                except CoordinatorError as exc:
                    log.warning("reload: shared settings not read (%s); read when it answers", exc)
            self.uptime.reconfigured(self)
            self.reloads += 1
            self.events.publish(
                "node", self.name, f"config {self.reloads - 1}", f"config {self.reloads}",
                "reloaded: " + "; ".join(changes),
            )
            for line in changes:
                log.info("reload: %s", line)
            return changes

    def reload_in_background(self) -> None:
        """SIGHUP: reload, and log what happened (there is nobody to answer)."""

        async def run() -> None:
            try:
                await self.reload()
            except ConfigError as exc:
                for problem in exc.problems:
                    log.error("reload refused: %s", problem)
                log.error("reload refused: %d problem(s); nothing changed", len(exc.problems))
            except ReloadError as exc:
                log.error("reload refused: %s; nothing changed", exc)

        task = self.loop.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def retire(self, servers: list[Server]) -> None:
        """Servers a reload removed: their idle connections close now, requests in flight
        finish (and are still timed out by the sweep)."""
        close_idle_upstreams(servers, -1.0, self.loop.time())  # every idle one
        self.retired += [server for server in servers if server.conns]

    async def _sweep(self) -> None:
        """Time out what is overdue: responses (every tick), idle connections (every second,
        or a quarter of the shortest idle timeout).

        One sweep for all connections instead of a timer per request: a timer costs about
        2 us to arm and cancel, a queue entry a tenth of that.
        """
        next_idle_sweep = 0.0
        while True:
            await asyncio.sleep(SWEEP_TICK)
            try:
                next_idle_sweep = self._sweep_once(self.loop.time(), next_idle_sweep)
            except Exception:  # a bug here must not stop every timeout of the node
                log.exception("sweep failed; going on")

    def _sweep_once(self, now: float, next_idle_sweep: float) -> float:
        for pool in self.pools.values():
            expire_responses(pool.servers, now)
            pool.expire_ejections(now)
            pool.advance_ramps(now)
        if self.retired:
            self._sweep_retired(now)
        if now < next_idle_sweep:
            return next_idle_sweep
        pools = self.pools.values()
        for ctx in self.contexts:
            close_idle_clients(ctx, now)
        for pool in pools:
            close_idle_upstreams(pool.servers, pool.config.timeouts.idle, now)
        live = {front.ctx for front in self.fronts.values()}
        self.contexts = [c for c in self.contexts if c in live or c.connections]
        return now + min([1.0] + [p.config.timeouts.idle / 4 for p in pools])

    def _sweep_retired(self, now: float) -> None:
        """Servers a reload removed: time out their overdue responses, close connections
        as they come back idle, forget the server once it has none."""
        expire_responses(self.retired, now)
        close_idle_upstreams(self.retired, -1.0, now)  # every idle one: no request will come
        self.retired = [server for server in self.retired if server.conns]

    # -- run and stop ----------------------------------------------------------------------

    def is_ready(self) -> bool:
        return self.ready and not self.stopping.is_set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload_in_background)

    async def wait(self) -> None:
        await self.stopping.wait()

    async def shutdown(self, deadline: float = SHUTDOWN_DEADLINE) -> None:
        """Stop accepting, let in-flight requests finish within ``deadline``, then close."""
        self.stopping.set()
        self.ready = False
        if self.shared is not None:
            await self.shared.stop()
        if self.cluster is not None:  # first: a follower takes the lead while we drain
            await self.cluster.stop()
        self.uptime.stopping(self)
        for binding in self.bindings.values():
            if binding.server is not None:
                binding.server.close()
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
        for checker in self.checkers.values():
            await checker.stop()
        if self.admin is not None:
            self.admin.close()
        for pool in self.pools.values():
            self.retire(pool.servers)
        await self.slo.close()
        await self.uptime.close()

    async def switchover(self, to: str | None) -> dict[str, Any]:
        """Planned handover of the lead (see HaLoop.switchover); raise SwitchoverError."""
        if self.cluster is None:
            raise SwitchoverError(409, "this node runs alone (no cluster: section)")
        return await self.cluster.switchover(to)

    def save_state(self) -> None:
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
            "reloads": self.reloads,
            "listeners": [s.status() for s in self.listeners],
            "pools": [p.status() for p in self.pools.values()],
            "cluster": self.cluster.status() if self.cluster is not None else None,
        }


async def serve(config: Config, config_path: Path | None = None) -> None:
    """Run a node until SIGTERM/SIGINT; print the readiness line once it serves. SIGHUP
    reloads ``config_path``."""
    node = Node(config, config_path)
    node.install_signal_handlers()
    try:
        line = await node.start()
    except ReloadError as exc:
        await node.shutdown(deadline=0)
        raise NodeStartError(str(exc)) from exc
    # Objects made at start-up live as long as the node: keep the cyclic GC from scanning
    # them again and again under load.
    gc.freeze()
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    log.info("%s", line)
    log.info("data plane: %s", http_build())
    await node.wait()
    log.info("stopping: finishing in-flight requests (deadline %ss)", SHUTDOWN_DEADLINE)
    await node.shutdown()
    log.info("stopped")


class NodeStartError(Exception):
    """The node could not start (an address in use, a permission refused)."""
