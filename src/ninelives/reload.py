"""Apply a config to a running node: at start, and on every hot reload.

Two phases. :func:`prepare` does everything that can fail or take time and changes nothing
that serves: it binds the addresses that are new (bound, not yet accepting) and checks the
servers that are new once, so that they enter rotation by a check as they do at start.
:func:`commit` then switches everything in one step of the event loop, so no request sees
half a config:

- a pool still in the config takes its new settings and keeps the servers it still has
  (same name and address) with their health, ejection, drain/maint, runtime weights,
  counters and pooled connections; a removed server takes no new requests and the ones it
  has in flight finish (the node's sweep still times them out);
- an address still in the config keeps its socket, and is re-pointed at its listener;
  an HTTP listener kept under the same name keeps its client connections, whose next
  requests follow the new routes; an address no longer in the config stops accepting and
  what it accepted finishes.

HAProxy reloads by starting a new process, which forgets server state unless a state file
is configured and leaves old processes serving old connections with the old config.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ninelives import runtime_state
from ninelives.admin import start_admin
from ninelives.config import ReloadError
from ninelives.health import CheckResult, HealthChecker, probe
from ninelives.http.context import HttpContext, Route
from ninelives.http.downstream import Downstream
from ninelives.listener import Binding, ListenerStats, answer_from_a_vip_gone, bound_addresses
from ninelives.pool import Pool, Server
from ninelives.tcp import tcp_protocol_factory

if TYPE_CHECKING:
    from ninelives.address import Address
    from ninelives.config import Config, ListenerConfig, PoolConfig
    from ninelives.node import Node

log = logging.getLogger("ninelives.reload")
LISTEN_BACKLOG = 4096


@dataclass(slots=True)
class Front:
    """A listener as it runs: counters, HTTP context (None for TCP), what makes the protocol
    for each accepted connection, and the keys of the bindings it is served on."""

    name: str
    protocol: str
    stats: ListenerStats
    ctx: HttpContext | None
    factory: Callable[[], asyncio.Protocol]
    keys: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Prepared:
    config: Config
    bound: dict[str, Binding]  # new addresses, bound, not accepting yet
    admin: asyncio.Server | None  # a new admin socket when admin.listen changed
    pools: dict[str, Pool]  # new pools, every server checked once
    checkers: dict[str, HealthChecker]
    checked: dict[str, list[tuple[Server, CheckResult]]]  # new servers of kept pools


def binding_key(listener: str, address: Address) -> str:
    """What identifies a listening socket across reloads: its address; with port 0 ("any
    free port") the listener's own, kept while its config says port 0."""
    return f"{listener}/{address}" if address.port == 0 else str(address)


async def apply(node: Node, config: Config) -> list[str]:
    """Apply ``config`` to ``node``; return one sentence per change. On ReloadError
    nothing changed."""
    prepared = await prepare(node, config)
    changes = commit(node, prepared)
    for binding in prepared.bound.values():
        if binding.server is not None:
            await binding.server.start_serving()
    return changes


# -- prepare: everything that can fail or wait ------------------------------------------------


async def prepare(node: Node, config: Config) -> Prepared:
    loop = asyncio.get_running_loop()
    bound: dict[str, Binding] = {}
    admin: asyncio.Server | None = None
    try:
        for lc in config.listeners:
            for i, address in enumerate(lc.bind):
                key = binding_key(lc.name, address)
                if key in node.bindings or key in bound:
                    continue
                binding = Binding(key)
                try:
                    binding.server = await loop.create_server(
                        binding.protocol, address.host, address.port,
                        reuse_address=True, backlog=LISTEN_BACKLOG, start_serving=False,
                    )
                except OSError as exc:
                    raise ReloadError(
                        f"listeners.{lc.name}.bind[{i}]: cannot bind {address}: {_why(exc)}"
                    ) from exc
                bound[key] = binding
                if config.cluster is not None and config.cluster.vip is not None:
                    why = answer_from_a_vip_gone(binding.server)
                    if why is not None:
                        log.warning("listener %s: answers in flight at a handover of the "
                                    "VIP will be lost: %s", lc.name, why)
        if node.admin is None or config.admin.listen != node.config.admin.listen:
            try:
                admin = await start_admin(node, config.admin.listen)
            except OSError as exc:
                raise ReloadError(
                    f"admin.listen: cannot bind {config.admin.listen}: {_why(exc)}"
                ) from exc
    except BaseException:
        for binding in bound.values():
            if binding.server is not None:
                binding.server.close()
        raise
    pools: dict[str, Pool] = {}
    checkers: dict[str, HealthChecker] = {}
    checked: dict[str, list[tuple[Server, CheckResult]]] = {}
    rounds = []
    for name, pc in config.pools.items():
        pool = node.pools.get(name)
        if pool is None:
            pools[name] = Pool(name, pc, events=node.events)
            checkers[name] = HealthChecker(pools[name], loop)
            rounds.append(checkers[name].first_round())
        else:
            fresh = pool.newcomers(pc)
            if fresh:
                rounds.append(_check(fresh, pc, checked.setdefault(name, [])))
    # One round of checks before serving: a dead server is never taken for a live one.
    await asyncio.gather(*rounds)
    return Prepared(config, bound, admin, pools, checkers, checked)


def _why(exc: OSError) -> str:
    # asyncio wraps the bind error in its own sentence; the errno says it best.
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


async def _check(
    servers: list[Server], pc: PoolConfig, into: list[tuple[Server, CheckResult]]
) -> None:
    results = await asyncio.gather(*(probe(s, pc.health) for s in servers))
    into.extend(zip(servers, results, strict=True))


# -- commit: one synchronous step -------------------------------------------------------------


def commit(node: Node, prepared: Prepared) -> list[str]:
    config = prepared.config
    changes: list[str] = []
    first = not node.pools and not node.fronts
    _commit_pools(node, prepared, changes)
    if first:
        # Drain, maint and weights an operator set before a restart hold again.
        for line in runtime_state.restore(node.state_path, node.pools):
            changes.append(line)
    if node.shared is not None:
        # Active-active: what the nodes share wins, before a new server can serve.
        changes += node.shared.reapply()
    _commit_listeners(node, prepared, changes)
    if prepared.admin is not None:
        if node.admin is not None:
            node.admin.close()
            changes.append(f"admin: listening on {config.admin.listen} (was {node.admin_address})")
        node.admin = prepared.admin
        node.admin_address = ",".join(bound_addresses(prepared.admin))
    if not first and config.admin.token != node.config.admin.token:
        changes.append("admin: token changed")
    node.admin_token = config.admin.token
    node.name = config.node.name
    node.state_path = config.node.state_dir / runtime_state.FILE_NAME
    node.config = config
    if not first:
        node.save_state()
    return changes or ["no changes"]


def _commit_pools(node: Node, prepared: Prepared, changes: list[str]) -> None:
    config = prepared.config
    pools: dict[str, Pool] = {}
    for name, pc in config.pools.items():
        pool = prepared.pools.get(name)
        if pool is not None:
            pool.on_admin_change.append(lambda _pool: node.save_state())
            node.checkers[name] = prepared.checkers[name]
            if node.started:
                prepared.checkers[name].start()
            ups = sum(1 for s in pool.servers if s.healthy)
            changes.append(f"pool {name}: added ({ups} of {len(pool.servers)} servers up)")
            pools[name] = pool
            continue
        pool = node.pools[name]
        before = pool.config
        checked = prepared.checked.get(name, [])
        removed = pool.reconfigure(pc, {server.name: server for server, _ in checked})
        node.checkers[name].sync(checked)
        for server, result in checked:
            changes.append(f"pool {name}: server {server.name} added ({server.state}: "
                           f"{result.detail})")
        for server in removed:
            changes.append(f"pool {name}: server {server.name} removed "
                           f"({server.active} in flight finish)")
        node.retire(removed)
        settings = [
            key for key in type(pc).model_fields
            if key not in ("tiers", "servers") and getattr(pc, key) != getattr(before, key)
        ]
        settings += [
            f"{s.name} weight {s.config_weight}" for s in pool.servers
            if _config_weight(before, s.name) not in (None, s.config_weight)
        ]
        if settings:
            changes.append(f"pool {name}: changed {', '.join(settings)}")
        pools[name] = pool
    for name, pool in node.pools.items():
        if name not in pools:
            node.checkers.pop(name).cancel()
            node.retire(pool.servers)
            node.events.publish("pool", name, pool.state, "removed", "not in the config now")
            changes.append(f"pool {name}: removed")
    node.pools = pools


def _config_weight(pc: PoolConfig, server: str) -> int | None:
    for tier in pc.tier_list():
        for sc in tier.servers:
            if sc.name == server:
                return sc.weight
    return None


def _commit_listeners(node: Node, prepared: Prepared, changes: list[str]) -> None:
    fronts: dict[str, Front] = {}
    bindings: dict[str, Binding] = {}
    for lc in prepared.config.listeners:
        old = node.fronts.get(lc.name)
        was = (old.protocol, old.stats.pool_name) if old is not None else None
        front = _front(node, lc, old)
        # A listener's state is "listening" while any of its addresses is bound: binding a
        # second address, or closing one of two, is a change of addresses, not of state.
        state = "listening" if old is not None and old.keys else "closed"
        for address in lc.bind:
            key = binding_key(lc.name, address)
            binding = node.bindings.get(key) or prepared.bound[key]
            binding.factory = front.factory
            bindings[key] = binding
            front.keys.append(key)
            front.stats.addresses.extend(binding.addresses())
            if key not in node.bindings:
                bound = ", ".join(binding.addresses())
                node.events.publish("listener", lc.name, state, "listening", f"bound {bound}")
                state = "listening"
                if old is not None:
                    changes.append(f"listener {lc.name}: bound {address}")
        if old is None:
            changes.append(f"listener {lc.name}: added ({lc.protocol}, pool {lc.pool})")
        elif was != (lc.protocol, lc.pool):
            changes.append(f"listener {lc.name}: now {lc.protocol} to pool {lc.pool}")
        fronts[lc.name] = front
    for key, binding in node.bindings.items():
        if key not in bindings and binding.server is not None:
            gone = ", ".join(binding.addresses())
            binding.server.close()  # stops accepting; accepted connections go on
            owner = next((f.name for f in node.fronts.values() if key in f.keys), "?")
            still = fronts.get(owner)
            if still is not None and still.keys:
                node.events.publish("listener", owner, "listening", "listening",
                                    f"closed {gone}; still bound to "
                                    f"{', '.join(still.stats.addresses)}")
            else:
                node.events.publish("listener", owner, "listening", "closed", f"closed {gone}")
            changes.append(f"listener {owner}: closed {gone}")
    for name, front in node.fronts.items():
        kept = fronts.get(name)
        if front.ctx is not None and (kept is None or kept.ctx is not front.ctx):
            for conn in list(front.ctx.connections):
                conn.shutdown()  # finish the request in flight, then close
        if kept is None:
            changes.append(f"listener {name}: removed")
    node.fronts = fronts
    node.bindings = bindings
    node.listeners = [front.stats for front in fronts.values()]


def _front(node: Node, lc: ListenerConfig, old: Front | None) -> Front:
    pool = node.pools[lc.pool]
    if old is not None and old.protocol == lc.protocol:
        stats = old.stats
        stats.addresses = []
        stats.pool_name = lc.pool
    else:
        stats = ListenerStats(lc.name, lc.protocol, lc.pool)
    if lc.protocol == "tcp":
        factory = tcp_protocol_factory(stats, pool, node.loop, node.tcp_connections)
        return Front(lc.name, lc.protocol, stats, None, factory)
    routes = tuple(
        Route(
            host=r.match.host.lower().encode() if r.match.host else None,
            path_prefix=r.match.path_prefix.encode() if r.match.path_prefix else None,
            pool=node.pools[r.pool],
        )
        for r in lc.routes
    )
    if old is not None and old.ctx is not None:
        # The same HTTP listener: its open client connections take the new routes for
        # their next requests.
        old.ctx.pool = pool
        old.ctx.routes = routes
        old.ctx.stats = stats
        return Front(lc.name, lc.protocol, stats, old.ctx, old.factory)
    ctx = HttpContext(loop=node.loop, stats=stats, pool=pool, routes=routes)
    node.contexts.append(ctx)
    return Front(lc.name, lc.protocol, stats, ctx, lambda: Downstream(ctx))

