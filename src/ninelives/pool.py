"""Runtime state of pools and servers: what the data plane picks from.

The balancing decision itself is a pure function in :mod:`ninelives.balance`
over ``Pool.candidates``, an immutable tuple that is rebuilt only when a
server's availability changes (health, drain/maint, weight), never per request.
"""

from __future__ import annotations

import logging
import random
from bisect import bisect_left
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ninelives.address import Address
from ninelives.balance import Balancer, make_balancer
from ninelives.config.checks import RAMPED_BALANCES
from ninelives.events import EventLog
from ninelives.panic import judge as judge_panic
from ninelives.panic import tier_health
from ninelives.slow_start import RAMP_FLOOR, ramp_share
from ninelives.states import EJECTABLE, IN_SERVICE, Health, Signal, next_health, shown
from ninelives.units import format_duration

logger = logging.getLogger("ninelives.pool")

if TYPE_CHECKING:
    from ninelives.config import PoolConfig


class AdminState(StrEnum):
    """What an operator asked of a server: ``ready``, ``drain`` or ``maint``."""

    READY = "ready"
    DRAIN = "drain"  # no new clients; sticky clients already pinned still reach it
    MAINT = "maint"  # no traffic at all


MAX_WEIGHT = 256  # as HAProxy: weights 0-256


# Upper bounds (seconds) of the latency histogram buckets, as Prometheus expects them.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)


class LatencyHistogram:
    """A histogram cheap enough to observe on every request: one bisect, two adds (the
    proxy does them inline; ``observe`` is the same for everything else)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts)

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


def connect_error(exc: OSError | TimeoutError) -> str:
    """What a failed connect to a server says, as shown in errors and reasons."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror.lower() if exc.strerror else type(exc).__name__


class Server:
    """One upstream server of a pool: its address, runtime state and counters."""

    __slots__ = (
        "name", "address", "host", "port", "config_weight", "weight", "tier", "provider",
        "admin_state", "health", "health_reason", "active", "requests", "responses",
        "failures", "idle", "conns", "pool", "ejected_until", "times_ejected",
        "eject_reason", "fail_streak", "ok_mark", "answering", "out", "ramp", "ramp_since",
    )

    def __init__(
        self, pool: Pool, name: str, address: Address, weight: int, tier: int, provider: str,
        health: Health = Health.UNCHECKED,
    ) -> None:
        self.pool = pool
        self.name = name
        self.address = address
        self.host = address.host
        self.port = address.port
        self.config_weight = weight
        self.weight = weight
        self.tier = tier
        self.provider = provider
        self.admin_state = AdminState.READY
        self.health = health  # see ninelives.states for the machine
        self.health_reason = "not checked yet"
        self.active = 0  # requests (http) or connections (tcp) in flight
        self.requests = 0
        # responses[k] counts status class k (1..5); responses[0] counts requests that got
        # no response from this server (connect failure, reset, timeout).
        self.responses = [0, 0, 0, 0, 0, 0]
        self.failures = 0
        self.idle: list[Any] = []  # idle keep-alive upstream connections, most recent last
        # Every open HTTP connection to this server, idle or carrying a request: the sweep
        # looks here for overdue responses (a few connections, not every request).
        self.conns: set[Any] = set()
        # Outlier ejection (passive detection): out of rotation until ``ejected_until``
        # (loop time). The failure streak is counted without a write per success: it is
        # consecutive while no response of class 1-4 came since the last failure (``ok_mark``
        # holds their count at that failure).
        self.ejected_until = 0.0
        self.times_ejected = 0
        self.eject_reason = ""
        self.fail_streak = 0
        self.ok_mark = 0
        # Its last check got an answer, passing or not (a status, an exit code); panic
        # spreads only over such servers. False until a check says so.
        self.answering = False
        # Slow start: ``out`` is whether it took no traffic at the last refresh (down,
        # ejected, maint); ``ramp`` the share of its weight it takes, growing since
        # ``ramp_since`` (loop time; None until the next sweep tick gives it one).
        self.out = False
        self.ramp = 1.0
        self.ramp_since: float | None = None

    @property
    def healthy(self) -> bool:
        """Up by its active checks (ejected or not)."""
        return self.health in IN_SERVICE or self.health is Health.EJECTED

    @property
    def ejected(self) -> bool:
        return self.health is Health.EJECTED

    def is_available(self) -> bool:
        """May new clients be sent here?"""
        return (
            self.health in IN_SERVICE and self.admin_state is AdminState.READY
            and self.weight > 0
        )

    def accepts_pinned(self) -> bool:
        """May a client already pinned here (sticky cookie) keep coming?"""
        return (
            self.health in IN_SERVICE and self.admin_state is not AdminState.MAINT
            and self.weight > 0
        )

    @property
    def state(self) -> str:
        return shown(self.health, self.admin_state.value)

    @property
    def reason(self) -> str:
        return self.eject_reason if self.health is Health.EJECTED else self.health_reason

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": str(self.address),
            "tier": self.tier,
            "provider": self.provider,
            "state": self.state,
            "admin_state": self.admin_state.value,
            "healthy": self.healthy,
            "reason": self.reason,
            "times_ejected": self.times_ejected,
            "weight": self.weight,
            "config_weight": self.config_weight,
            "ramp": self.ramp,
            "active": self.active,
            "idle_connections": len(self.idle),
            "requests": self.requests,
            "responses": {f"{k}xx": n for k, n in enumerate(self.responses) if k},
            "failures": self.failures,
        }


def first_available(
    tiers: list[list[Server]], excluded: frozenset[str]
) -> tuple[int | None, tuple[Server, ...]]:
    """The first tier with an available server not in ``excluded``, and those servers."""
    for index, tier in enumerate(tiers):
        available = tuple(s for s in tier if s.is_available() and s.name not in excluded)
        if available:
            return index, available
    return None, ()


class Pool:
    """A named pool: tiers of servers in failover order, and the balancer over them."""

    # Slots: the data plane reads several of these on every request.
    __slots__ = (
        "name", "config", "servers", "tiers", "by_name", "rng", "balancer", "sticky_cookie",
        "hash_kind", "hash_name", "keyed", "plain", "latency", "no_server",
        "response_timeout", "candidates", "max_tries", "retry_on", "retry_methods",
        "retrying", "retries", "retry_outcomes", "ejections", "active_tier", "on_admin_change",
        "events", "initial", "state", "state_reason", "slow_start", "ramping", "panic",
        "hash_excluded",
    )

    def __init__(
        self,
        name: str,
        config: PoolConfig,
        rng: random.Random | None = None,
        events: EventLog | None = None,
        initial: Health = Health.UNCHECKED,
    ) -> None:
        self.name = name
        self.rng = rng if rng is not None else random.Random()
        self.events = events if events is not None else EventLog()
        self.initial = initial  # the health of a server before its first check
        self.servers: list[Server] = []
        self.tiers: list[list[Server]] = []
        self.by_name: dict[str, Server] = {}
        self.latency = LatencyHistogram()
        self.no_server = 0  # requests answered 503 because nothing was available
        self.retrying = 0  # requests in flight that are being retried (the budget's count)
        self.retries: dict[str, int] = {}  # retries sent, by cause
        # How retried requests ended: answered (by a server, below 500), failed (another
        # error), budget (a retry was refused by the budget), exhausted (no tries left).
        self.retry_outcomes = dict.fromkeys(("answered", "failed", "budget", "exhausted"), 0)
        self.ejections = 0
        self.candidates: tuple[Server, ...] = ()
        self.active_tier: int | None = None
        self.state = "unchecked"  # up | backup | panic | down (see refresh)
        self.state_reason = "not checked yet"
        self.ramping: list[Server] = []  # servers in slow start, moved on by advance_ramps
        self.panic = ""  # why the pool is in panic; empty when it is not
        # Servers another node of an active-active cluster sees down: out of the hash
        # table here too, so every node builds the same one (ninelives.cluster.sharing).
        self.hash_excluded: frozenset[str] = frozenset()
        # Called after an operator's change (state, weight), e.g. to save it to disk.
        self.on_admin_change: list[Callable[[Pool], None]] = []
        self.reconfigure(config)

    def reconfigure(
        self, config: PoolConfig, added: Mapping[str, Server] | None = None
    ) -> list[Server]:
        """Take ``config`` (at start and on a hot reload); return the servers it removed.

        A server still in the config under the same name and address is kept, with its
        health, ejection, operator state, counters and pooled connections; a weight that an
        operator changed stays changed. Other servers are new: taken from ``added`` when the
        caller has already checked them (see :meth:`newcomers`), else made here.
        """
        self.config = config
        self.balancer: Balancer = make_balancer(config.balance, self.rng)
        self.sticky_cookie: bytes | None = (
            config.sticky.cookie.encode("latin-1") if config.sticky else None
        )
        kind, _, name_ = config.hash_on.partition(":")
        self.hash_kind = kind  # client_ip | header | cookie
        self.hash_name = name_.lower().encode("latin-1")
        self.keyed = config.balance == "hash"  # does pick() need a key from the request?
        self.plain = self.sticky_cookie is None and not self.keyed  # no per-request lookups
        self.response_timeout = config.timeouts.response  # read on every request
        retries = config.retries
        self.max_tries = retries.attempts + 1  # servers one request may be sent to
        self.retry_on = frozenset(retries.on)
        self.retry_methods = frozenset(m.encode() for m in retries.methods)
        before = self.by_name
        fresh = {s.name: s for s in self.newcomers(config)} if added is None else added
        self.tiers = []
        for index, tier in enumerate(config.tier_list()):
            members = []
            for sc in tier.servers:
                server = before.get(sc.name)
                if server is None or server.address != sc.address:
                    server = fresh[sc.name]
                elif server.weight == server.config_weight:
                    server.weight = sc.weight  # not changed by an operator: the config's
                server.config_weight = sc.weight
                server.tier = index
                server.provider = tier.provider
                members.append(server)
            self.tiers.append(members)
        self.servers = [server for tier in self.tiers for server in tier]
        self.by_name = {server.name: server for server in self.servers}
        kept = set(self.servers)
        # Slow start only where weights make shares (hash would move keys at every step).
        self.slow_start = config.slow_start if config.balance in RAMPED_BALANCES else 0.0
        self.ramping = [s for s in self.ramping if s in kept]
        self.refresh()
        return [server for server in before.values() if server not in kept]

    def newcomers(self, config: PoolConfig) -> list[Server]:
        """The servers of ``config`` this pool does not have (by name and address), made in
        the pool's ``initial`` health and not yet part of it."""
        return [
            Server(self, sc.name, sc.address, sc.weight, index, tier.provider, self.initial)
            for index, tier in enumerate(config.tier_list())
            for sc in tier.servers
            if (have := self.by_name.get(sc.name)) is None or have.address != sc.address
        ]

    def refresh(self) -> None:
        """Recompute the candidate set: the available servers of the first tier that has any.

        Active/active is every available server of that tier; active/passive is a later tier
        that is reached only when every tier before it has none. When a primary returns, the
        next refresh makes its tier the candidate set again (automatic failback). Too few
        healthy servers put the pool in panic (:mod:`ninelives.panic`). A hash pool of an
        active-active cluster leaves out the servers another node sees down
        (``hash_excluded``), unless that leaves it nothing.
        """
        self._start_ramps()
        excluded = self.hash_excluded if self.keyed else frozenset()
        self.active_tier, self.candidates = first_available(self.tiers, excluded)
        if self.active_tier is None and excluded:
            # Agreeing with the other nodes would leave nothing: balance by my own view.
            self.active_tier, self.candidates = first_available(self.tiers, frozenset())
        self._judge_panic()
        self._pool_state()

    def exclude_from_hash(self, servers: frozenset[str]) -> None:
        """Keep ``servers`` (seen down by another node) out of a hash pool's candidates,
        unless that would leave none; rebuild the candidates only when the set changed."""
        if servers != self.hash_excluded:
            self.hash_excluded = servers
            if self.keyed:
                self.refresh()

    def _pool_state(self) -> None:
        """Publish the pool's state when it changes: up, backup (served by a later tier),
        panic (too few healthy servers: spread over those that answer), down (no server
        available)."""
        if self.panic:
            state, why = "panic", self.panic
        elif self.active_tier is None:
            if any(s.health is Health.UNCHECKED for s in self.servers):
                return  # not checked yet: not down, not up
            state = "down"
            why = "no server available: " + (
                ", ".join(f"{s.name} {s.state}" for s in self.servers) or "none configured"
            )
        elif self.active_tier == 0:
            state, why = "up", f"{len(self.candidates)} of {len(self.servers)} servers available"
        else:
            state = "backup"
            first = self.tiers[0][0].provider if self.tiers[0] else "tier 0"
            provider = self.candidates[0].provider or f"tier {self.active_tier}"
            why = f"no server of {first or 'tier 0'} available; serving from {provider}"
        if state != self.state:
            old, self.state, self.state_reason = self.state, state, why
            self.events.publish("pool", self.name, old, state, why)

    def pick(self, key: bytes | None) -> Server | None:
        return self.balancer.pick(self.candidates, key)

    def fallback(self, tried: list[Server]) -> Server | None:
        """Another server for a request whose server could not be reached.

        The untried available servers of the active tier come first; when there are none
        left, the next tier that has one: a client should not see a failure that a backup
        could have answered just because health checks have not noticed the loss yet.
        """
        for tier in self.tiers:
            untried = [s for s in tier if s.is_available() and s not in tried]
            if untried:
                return untried[self.rng.randrange(len(untried))]
        # In panic, the servers failing their checks that panic balances over come last.
        untried = [s for s in self.candidates if s not in tried]
        return untried[self.rng.randrange(len(untried))] if untried else None

    def may_retry(self) -> bool:
        """Does the retry budget allow one more request in retry? It is a share of the
        requests in flight, with a floor, so a sick pool is not flooded with retries."""
        active = sum(s.active for s in self.servers)
        retries = self.config.retries
        return self.retrying < max(retries.min_retries, retries.budget * active)

    # -- passive detection (outlier ejection) ------------------------------------------------

    def record_failure(self, server: Server, now: float, what: str) -> bool:
        """Live traffic saw ``server`` fail (connect failure, timeout, reset, 5xx): count
        the streak and eject the server when it is long enough. True when ejected now.

        A down server that panic spreads clients over is benched the same way (kept out of
        the panic for the ejection time, ``ejected_until``): its check was right after all."""
        outlier = self.config.outlier
        benchable = bool(self.panic) and not server.healthy and server in self.candidates
        if not outlier.enabled or (server.health not in EJECTABLE and not benchable):
            return False
        ok = server.responses[1] + server.responses[2] + server.responses[3]
        ok += server.responses[4]
        if ok != server.ok_mark:
            server.ok_mark = ok
            server.fail_streak = 0  # a good response came in between: a new streak
        server.fail_streak += 1
        if server.fail_streak < outlier.consecutive_failures:
            return False
        ejected = sum(1 for s in self.servers if s.health is Health.EJECTED)
        if ejected >= max(1, int(len(self.servers) * outlier.max_ejected)):
            return False  # the cap: ejecting more would overload the rest
        server.times_ejected += 1
        self.ejections += 1
        seconds = min(outlier.ejection * server.times_ejected, outlier.max_ejection)
        server.ejected_until = now + seconds
        server.fail_streak = 0
        server.eject_reason = (
            f"ejected for {format_duration(seconds)}: "
            f"{outlier.consecutive_failures} consecutive failures, last: {what}"
        )
        if benchable:
            self.refresh()  # out of the panic's spread (panic.spreadable)
        else:
            self._step(server, Signal.EJECT, server.eject_reason)
        return True

    def expire_ejections(self, now: float) -> None:
        """Put back servers whose ejection is over. (One that its checks found down in the
        meantime is down, not ejected: it comes back when ``rise`` checks pass.)"""
        for server in self.servers:
            if 0.0 < server.ejected_until <= now:
                server.ejected_until = 0.0
                server.fail_streak = 0
                if server.health is Health.EJECTED:
                    reason = f"back from ejection; {server.health_reason}"
                    self._step(server, Signal.RETURN, reason)
                else:
                    self.refresh()  # a benched server is back in the panic's spread

    def check_result(self, server: Server, signal: Signal, reason: str) -> None:
        """Record what an active check saw (``reason`` says it) and move the server's health."""
        server.health_reason = reason
        self._step(server, signal, reason)

    def _step(self, server: Server, signal: Signal, reason: str) -> None:
        """Move ``server`` by the transition table; publish and apply what changed."""
        old = server.health
        new = next_health(old, signal)
        if new is old:
            return
        before = server.state
        server.health = new
        if signal is Signal.RISE:
            server.ejected_until = 0.0  # back by its checks: a past ejection is over
        self._published(server, before, reason)
        self.refresh()
        if new is Health.DOWN:
            # Requests waiting on it for a response head (a hung server) go elsewhere now,
            # not at the response timeout.
            for upstream in list(server.conns):
                upstream.server_down()

    # -- slow start and panic ----------------------------------------------------------------

    def _start_ramps(self) -> None:
        """Start the slow start of every server that takes traffic again (back from down,
        ejection or maint); stop that of a server out again. Runs first in every refresh,
        so a returning server never enters the candidates at its full weight."""
        for server in self.servers:
            if server.health is Health.UNCHECKED:
                continue  # its first check says up or down: not a return, no ramp
            out = not server.healthy or server.ejected or server.admin_state is AdminState.MAINT
            if out and server.ramp < 1.0:
                server.ramp = 1.0  # out again: when it is back, its ramp starts over
                self.ramping.remove(server)
            elif server.out and not out and self.slow_start > 0:
                server.ramp = RAMP_FLOOR
                server.ramp_since = None
                self.ramping.append(server)
                logger.info(
                    "server %s/%s back: slow start from %.0f%% of its weight to all of it in %s",
                    self.name, server.name, RAMP_FLOOR * 100,
                    format_duration(self.slow_start),
                )
            server.out = out

    def advance_ramps(self, now: float) -> None:
        """Move every slow start along; rebuild the candidates when a share changed. The
        node's sweep calls this every tick; with no server ramping it returns at once."""
        if not self.ramping:
            return
        changed = False
        for server in list(self.ramping):
            if server.ramp_since is None:
                server.ramp_since = now
            share = ramp_share(now - server.ramp_since, self.slow_start)
            if share != server.ramp:
                server.ramp = share
                changed = True
            if share >= 1.0:
                self.ramping.remove(server)
                logger.info("server %s/%s at its full weight: slow start over", self.name,
                            server.name)
        if changed:
            self.refresh()

    def _judge_panic(self) -> None:
        if any(s.health is Health.UNCHECKED for s in self.servers):
            panic = None  # the first checks are not all in yet: too soon to judge
        else:
            panic = judge_panic(self.tiers, self.active_tier, self.config.panic)
        if panic is not None:
            self.candidates = panic.servers
        reason = panic.reason if panic is not None else ""
        if reason and not self.panic:
            logger.warning("pool %s in panic: %s", self.name, reason)
        elif self.panic and not reason:
            logger.warning("pool %s out of panic: %s", self.name, self._health_sentence())
        self.panic = reason

    def _health_sentence(self) -> str:
        if self.active_tier is None:
            return "no server available"
        healthy, total = tier_health(self.tiers[self.active_tier])
        noun = "server" if total == 1 else "servers"
        return f"{healthy} of {total} {noun} of tier {self.active_tier} healthy"

    def set_answering(self, server: Server, answered: bool) -> None:
        """Record whether the server's last check got an answer, passing or not. Panic
        balances over the down servers that answer, so the candidates may change."""
        if server.answering is answered:
            return
        server.answering = answered
        if not server.healthy and self.config.panic > 0:
            self.refresh()

    def _published(self, server: Server, before: str, reason: str) -> None:
        """Publish the server's change of shown state from ``before``, if it changed."""
        if server.state != before:
            self.events.publish("server", f"{self.name}/{server.name}", before, server.state,
                                reason)

    def pinned(self, name: bytes) -> Server | None:
        """The server a sticky cookie names, if it may still take that client."""
        server = self.by_name.get(name.decode("latin-1", "replace"))
        if server is not None and server.accepts_pinned():
            return server
        return None

    # -- runtime changes (admin API) --------------------------------------------------------

    def set_admin_state(
        self, server: str, state: AdminState, reason: str = "set by operator"
    ) -> Server:
        target = self.by_name[server]
        before = target.state
        target.admin_state = state
        self._published(target, before, reason)
        self.refresh()
        for callback in self.on_admin_change:
            callback(self)
        return target

    def set_weight(self, server: str, weight: int) -> Server:
        target = self.by_name[server]
        target.weight = weight
        self.refresh()
        for callback in self.on_admin_change:
            callback(self)
        return target

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "reason": self.state_reason,
            "balance": self.config.balance,
            "active_tier": self.active_tier,
            "available": len(self.candidates),
            "panic": bool(self.panic),
            "panic_reason": self.panic,
            "hash_excluded": sorted(self.hash_excluded) if self.keyed else [],
            "no_server": self.no_server,
            "tiers": [
                {
                    "provider": tier[0].provider if tier else "",
                    "servers": [s.status() for s in tier],
                }
                for tier in self.tiers
            ],
        }
