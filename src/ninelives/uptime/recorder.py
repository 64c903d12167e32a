"""The node's side of the uptime store: what it records, and when.

- At start, before anything is bound: the store is opened (which records the time the node
  was not running as downtime) and subscribed to the node's event log, so every state
  change from the first health check on is recorded. The subscriber only enqueues.
- Once the node serves: the node is ``up``, and entities in the history but not in the
  config any more stop being counted. The same after every reload.
- Every :data:`SAMPLE_EVERY` seconds a task reads the request counters the data plane
  already keeps (listener, server, pool) and queues what changed since the last sample.
  Nothing is added to the request path.
- At shutdown: a last sample, the node and its listeners are down from the moment it stops
  accepting, and the store commits everything and closes.

A store that cannot be opened (a read-only disk, a database from a newer version) is
logged and the node serves without history: serving comes first.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from ninelives.uptime.report import CLUSTER, Topology
from ninelives.uptime.schema import Counts, Key, StoreError
from ninelives.uptime.store import FILE_NAME, UptimeStore

if TYPE_CHECKING:
    from ninelives.cluster.coverage import Coverage
    from ninelives.config import Config
    from ninelives.events import EventLog
    from ninelives.listener import ListenerStats
    from ninelives.pool import Pool

log = logging.getLogger("ninelives.uptime")

SAMPLE_EVERY = 2.0  # seconds between two reads of the request counters
# Kinds whose entities are closed when they leave the config (providers have no intervals).
RETIRED_KINDS = ("server", "pool", "listener", "node")


class Served(Protocol):
    """What the recorder reads of a node: its name, config, listeners and pools."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> Config: ...
    @property
    def pools(self) -> Mapping[str, Pool]: ...
    @property
    def listeners(self) -> Sequence[ListenerStats]: ...


class UptimeRecorder:
    def __init__(self, store: UptimeStore | None, problem: str = "") -> None:
        self.store = store
        self.problem = problem  # why there is no store, when there is none
        self.clock: Callable[[], float] = time.time
        self.sampler: asyncio.Task[None] | None = None
        self.node_name = ""  # the name the node is recorded under (a reload may change it)
        self._last: dict[Key, Counts] = {}

    @classmethod
    def open(
        cls, config: Config, events: EventLog, served: Coverage | None = None
    ) -> UptimeRecorder:
        """``served``: another node of the cluster has served since (see
        :mod:`ninelives.cluster.coverage`)."""
        path = config.node.state_dir / FILE_NAME
        store = UptimeStore(path, config.uptime.retention)
        try:
            resumed = store.open(config.node.name, served)
        except (sqlite3.Error, StoreError, OSError) as exc:
            log.error("uptime history is off: cannot use %s: %s", path, exc)
            return cls(None, f"cannot use {path}: {exc}")
        log.info("uptime history in %s: %s", path, resumed.describe(time.time()))
        for rule in config.uptime.rules():
            log.info("planned maintenance window: %s", rule.describe())
        store.attach(events)
        return cls(store)

    def serving(self, node: Served) -> None:
        """The node serves: it is up, and the sampler starts."""
        if self.store is None:
            return
        now = self.clock()
        self.store.mark("node", node.name, "up", "serving: every listener bound", now)
        if node.config.cluster is not None:
            self.store.mark("cluster", CLUSTER, "serving", f"{node.name} serves", now)
        self.node_name = node.name
        self.reconfigured(node)
        self.sampler = asyncio.get_running_loop().create_task(self._sample_every(node))

    def reconfigured(self, node: Served) -> None:
        """After a reload: entities no longer configured end their intervals."""
        if self.store is None:
            return
        if self.node_name and node.name != self.node_name:
            self.store.mark("node", node.name, "up", f"renamed from {self.node_name}",
                            self.clock())
            self.node_name = node.name
        self.store.retire(topology(node).keys(), RETIRED_KINDS, self.clock())

    def stopping(self, node: Served) -> None:
        """The node stops accepting: from now on it and its listeners are down."""
        if self.store is None:
            return
        if self.sampler is not None:
            self.sampler.cancel()
        self.sample(node)
        self.store.stop(node.name, self.clock())

    async def close(self) -> None:
        if self.store is not None:
            await asyncio.to_thread(self.store.close)

    async def _sample_every(self, node: Served) -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            try:
                self.sample(node)
            except Exception:  # a bug here must not stop the sampling for good
                log.exception("uptime: sampling request counters failed; going on")

    def sample(self, node: Served) -> None:
        """Queue the requests counted since the last sample (a counter that went down
        belongs to a server a reload replaced: all of it is new)."""
        if self.store is None:
            return
        now = counters(node)
        rows: list[tuple[str, str, Counts]] = []
        for key, counts in now.items():
            before = self._last.get(key)
            if before is None or any(c < b for c, b in zip(counts, before, strict=True)):
                delta = counts
            else:
                delta = tuple(c - b for c, b in zip(counts, before, strict=True))  # type: ignore[assignment]
            if any(delta):
                rows.append((key[0], key[1], delta))
        self._last = now
        if rows:
            self.store.add_counts(self.clock(), rows)


def counters(node: Served) -> dict[Key, Counts]:
    """The request counters of every listener, server, pool and provider, by class
    (``[0]`` no response, ``[1]``..``[5]`` status classes). A pool counts the attempts of
    its servers and the requests it answered 503 for want of a server; a provider the
    attempts of its servers."""
    out: dict[Key, Counts] = {}
    for stats in node.listeners:
        out["listener", stats.name] = _counts(stats.responses)
    for pool in node.pools.values():
        total = [0] * 6
        by_provider: dict[str, list[int]] = {}
        for server in pool.servers:
            out["server", f"{pool.name}/{server.name}"] = _counts(server.responses)
            provider = by_provider.setdefault(server.provider, [0] * 6)
            for k, n in enumerate(server.responses):
                total[k] += n
                provider[k] += n
        total[5] += pool.no_server
        out["pool", pool.name] = _counts(total)
        for name, counts in by_provider.items():
            out["provider", f"{pool.name}/{name}"] = _counts(counts)
    return out


def _counts(values: list[int]) -> Counts:
    return (values[0], values[1], values[2], values[3], values[4], values[5])


def topology(node: Served) -> Topology:
    return Topology(
        node=node.name,
        clustered=node.config.cluster is not None,
        listeners=tuple((stats.name, stats.pool_name) for stats in node.listeners),
        pools=tuple(
            (name, tuple((server.name, server.provider) for server in pool.servers))
            for name, pool in node.pools.items()
        ),
    )


def configured(config: Config) -> Topology:
    """What a node with ``config`` serves, as :func:`topology` sees it on the running node
    (for reading its history without it)."""
    return Topology(
        node=config.node.name,
        clustered=config.cluster is not None,
        listeners=tuple((listener.name, listener.pool) for listener in config.listeners),
        pools=tuple(
            (name, tuple((server.name, tier.provider) for tier in pool.tier_list()
                         for server in tier.servers))
            for name, pool in config.pools.items()
        ),
    )
