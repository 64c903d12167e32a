"""Active-active: the thin shell that shares operator settings and health views.

The decisions are in :mod:`ninelives.cluster.sharing`; this module reads and writes the
coordinator and applies what they say to the node's pools.

- :meth:`SharedState.change` (the admin API's drain, maint, ready and weight) writes the
  pool's ``runtime/POOL`` key first (compare-and-set, again on a conflict) and applies it
  here after; if the coordinator cannot be written, nothing changes on any node and the
  caller gets :class:`CoordinatorError` (the API answers 503). A change applied here alone
  would be undone by the next read of the shared state, and the nodes would disagree
  until then without anyone knowing.
- A node that starts reads every pool's key before it makes its pools
  (:meth:`SharedState.open`), and each commit of a config (start, reload) applies the
  values last read in the same step, so no server serves against the shared settings.
- A watch on ``runtime/`` applies every node's changes as they land; when the watch
  starts (and starts again after the coordinator was lost) every pool's key is read
  again.
- :meth:`SharedState.view` is this node's health view for its member record;
  :meth:`SharedState.members_seen` takes every read of the member list and keeps the
  servers other nodes see down out of the hash tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from ninelives.cluster import sharing
from ninelives.cluster.connect import open_coordinator
from ninelives.cluster.coordinator import (
    Conflict,
    Coordinator,
    CoordinatorError,
    CoordinatorUnavailable,
    Member,
    Phase,
    bounded,
)
from ninelives.config import ClusterConfig
from ninelives.pool import AdminState, Pool
from ninelives.states import IN_SERVICE, Health

log = logging.getLogger("ninelives.cluster.shared")

T = TypeVar("T")
CAS_ATTEMPTS = 5  # writes that lost a race with another node's, before giving up
RETRY_EVERY = 0.25  # share of the lease between two attempts to watch again


class SharedState:
    """One node's side of the shared settings and health views."""

    def __init__(
        self, coordinator: Coordinator, me: str, pools: Callable[[], Mapping[str, Pool]],
    ) -> None:
        self.coordinator = coordinator
        self.me = me
        self.pools = pools
        self.error = ""  # the last failure to read the shared state, "" once it works
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._last: dict[str, str] = {}  # every pool's shared value as last read

    @classmethod
    async def open(
        cls, config: ClusterConfig, me: str, pools: Callable[[], Mapping[str, Pool]],
        names: list[str],
    ) -> SharedState:
        """Open a coordinator of its own and read the shared settings of the pools
        ``names``; raise CoordinatorError if either fails."""
        coordinator = await open_coordinator(config)
        shared = cls(coordinator, me, pools)
        try:
            await shared.sync(names)
        except BaseException:
            await coordinator.close()
            raise
        return shared

    async def start(self) -> None:
        """Start watching; wait (one lease at most) for the first read of every pool's
        settings, so that a node that starts serves with them."""
        self._task = asyncio.get_running_loop().create_task(self._watch())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), self.coordinator.ttl)

    async def stop(self) -> None:
        """Stop watching and close the coordinator."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.coordinator.close()

    # -- operator changes ------------------------------------------------------------------

    async def change(
        self, pool: str, server: str, state: AdminState | None = None, weight: int | None = None,
    ) -> None:
        """Write the change for every node, then apply it here; raise CoordinatorError
        (nothing changed anywhere) if the coordinator cannot be written."""
        key = sharing.runtime_key(pool)
        for _ in range(CAS_ATTEMPTS):
            entry = await self._bounded(self.coordinator.get(key))
            try:
                settings = sharing.parse_settings(entry.value if entry is not None else None)
            except ValueError as exc:
                log.warning("cluster: %s held %s; writing it anew", key, exc)
                settings = {}
            settings = sharing.with_change(settings, server, self.me, state, weight)
            value = sharing.format_settings(settings)
            try:
                await self._bounded(self.coordinator.compare_and_set(
                    key, value, entry.version if entry is not None else None),
                    "compare_and_set")
            except Conflict:
                continue  # another node changed the pool meanwhile: merge with theirs
            self.apply(pool, value)
            return
        raise CoordinatorUnavailable("compare_and_set", f"{key}: {CAS_ATTEMPTS} attempts "
                                                        "lost races with other nodes' writes")

    # -- applying --------------------------------------------------------------------------

    def apply(self, pool_name: str, value: str | None) -> list[sharing.Step]:
        """Make this node's servers of ``pool_name`` match the shared ``value``."""
        if value is not None:
            self._last[pool_name] = value
        pool = self.pools().get(pool_name)
        if pool is None or value is None:
            return []
        try:
            settings = sharing.parse_settings(value)
        except ValueError as exc:
            log.warning("cluster: ignoring %s: %s", sharing.runtime_key(pool_name), exc)
            return []
        have = {s.name: (s.admin_state, s.weight) for s in pool.servers}
        done = sharing.steps(settings, have)
        for step in done:
            if step.state is not None:
                pool.set_admin_state(step.server, step.state, step.reason)
            if step.weight is not None:
                pool.set_weight(step.server, step.weight)
            log.info("cluster: %s/%s: %s", pool_name, step.server, step.reason)
        return done

    def reapply(self) -> list[str]:
        """Apply the shared values last read, at once: in the commit of a config, so that
        a server it adds takes them before it can serve. One sentence per change."""
        return [f"pool {name}: server {step.server}: {step.reason} (shared)"
                for name, value in list(self._last.items())
                for step in self.apply(name, value)]

    async def sync(self, names: list[str] | None = None) -> None:
        """Read the shared settings of the pools ``names`` (default: every pool this node
        has) and apply them (start, reload, a new watch)."""
        for name in list(self.pools()) if names is None else names:
            entry = await self._bounded(self.coordinator.get(sharing.runtime_key(name)))
            self.apply(name, entry.value if entry is not None else None)

    async def _watch(self) -> None:
        while True:
            try:
                async with self.coordinator.watch(sharing.RUNTIME_PREFIX) as changes:
                    await self.sync()  # what changed before the watch began
                    self._synced.set()
                    self.error = ""
                    async for change in changes:
                        pool = sharing.pool_of(change.key)
                        if pool is not None:
                            self.apply(pool, change.value)
            except CoordinatorError as exc:
                if str(exc) != self.error:
                    log.warning("cluster: shared settings: %s; reading them again", exc)
                self.error = str(exc)
            await asyncio.sleep(RETRY_EVERY * self.coordinator.ttl)

    async def _bounded(self, work: Awaitable[T], phase: Phase = "get") -> T:
        return await bounded(phase, work, self.coordinator.ttl / 3)

    # -- health views ----------------------------------------------------------------------

    def view(self) -> dict[str, tuple[str, ...]]:
        """Per pool, the servers this node sees down (checked, and not up by its checks)."""
        out: dict[str, tuple[str, ...]] = {}
        for name, pool in self.pools().items():
            down = tuple(s.name for s in pool.servers
                         if s.health is not Health.UNCHECKED and s.health not in IN_SERVICE)
            if down:
                out[name] = down
        return out

    def members_seen(self, members: list[Member]) -> None:
        """Keep what other live nodes see down out of this node's hash tables."""
        excluded = sharing.hash_exclusions(members, self.me)
        for name, pool in self.pools().items():
            servers = excluded.get(name, frozenset())
            if pool.keyed and servers != pool.hash_excluded:
                who = {s: [m.name for m in members if s in m.down.get(name, ())]
                       for s in servers}
                said = ", ".join(f"{s} (down on {', '.join(who[s])})" for s in sorted(servers))
                log.info("cluster: pool %s: %s", name, f"out of the hash table: {said}"
                         if said else "every server back in the hash table")
            pool.exclude_from_hash(servers)
