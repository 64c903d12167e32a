"""The coordinator: the one small interface every cluster decision is made against.

A coordinator is a store that several ninelives nodes share. It offers:

- ``acquire``: create a key bound to a lease, only if nobody holds it; the answer carries a
  *fencing token*, a number that grows with every new holder (a holder that was paused
  and woke up late carries a smaller token than its successor, so anything that checks
  tokens can refuse it);
- ``renew`` and ``release`` of such a lease;
- ``compare_and_set`` and ``get`` of plain keys (shared state, no lease);
- ``watch`` of a prefix: the changes below it, as they happen;
- ``register`` and ``members``: each node's record (name, address, role, health), bound
  to a lease, so a node that dies drops out of the list by itself.

Keys are relative (``leader``, ``members/lb-1``); each implementation places them in its
own namespace (a file for :mod:`ninelives.cluster.local`, a prefix for
:mod:`ninelives.cluster.etcd`). Values are text (JSON where structured).

Time: every lease comes back with a ``deadline`` on the caller's monotonic clock, computed
from the moment the request was *sent* plus the lease's time to live. The store cannot
have expired the lease before that instant, so a holder that stops acting before its
deadline never overlaps with a successor. Decisions about when to renew and when to step
down live in :mod:`ninelives.cluster.election`.

Errors are named by what went wrong, and carry the phase (the operation) that failed:
:class:`CoordinatorUnavailable` (the store could not be reached or did not answer
sensibly: the store's side), :class:`LeaseLost` (the lease or the key bound to it is
gone: another holder may exist now), :class:`Conflict` (a compare-and-set found another
value: retry with what is there now).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Literal, Protocol, Self, TypeVar, runtime_checkable

MEMBERS_PREFIX = "members/"
T = TypeVar("T")

Phase = Literal[
    "open", "acquire", "renew", "release", "get", "compare_and_set", "watch", "register",
    "members", "close", "granted_ttl", "revoke",
]


class CoordinatorError(Exception):
    """Something the coordinator could not do; ``phase`` names the operation."""

    def __init__(self, phase: Phase, message: str) -> None:
        super().__init__(f"{phase}: {message}")
        self.phase = phase


class CoordinatorUnavailable(CoordinatorError):
    """The store could not be reached, timed out, or answered something unusable."""


class LeaseLost(CoordinatorError):
    """The lease expired or its key is gone: whatever it guarded may have a new holder."""


class Conflict(CoordinatorError):
    """A compare-and-set found another version; ``current`` is what is there now."""

    def __init__(self, key: str, expected: int | None, current: Entry | None) -> None:
        found = "absent" if current is None else f"at version {current.version}"
        wanted = "absent" if expected is None else f"at version {expected}"
        super().__init__("compare_and_set", f"{key}: expected {wanted}, found {found}")
        self.key = key
        self.expected = expected
        self.current = current


@dataclass(frozen=True, slots=True)
class Entry:
    """A key as the store holds it.

    ``token`` is the revision at which the key was created: for a lease-bound key, its
    fencing token. ``version`` is the revision of its last change: what a
    compare-and-set expects. Both come from one store-wide counter that only grows.
    """

    key: str
    value: str
    token: int
    version: int
    leased: bool
    lease_id: int = 0  # the store's id of the lease it is bound to (0: not told)


@dataclass(frozen=True, slots=True)
class Lease:
    """A key this node holds, bound to a lease that must be renewed.

    ``deadline`` is on the caller's monotonic clock: the send time of the request that
    granted or renewed the lease, plus ``ttl`` (what the store granted, which may exceed
    what was asked). ``renewed_at`` is that send time.
    """

    key: str
    value: str
    token: int
    id: int
    ttl: float
    renewed_at: float

    @property
    def deadline(self) -> float:
        return self.renewed_at + self.ttl


class ChangeKind(Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    """One change below a watched prefix. ``value`` is None for a delete."""

    kind: ChangeKind
    key: str
    value: str | None
    revision: int


Role = Literal["leader", "follower", "active"]
MemberHealth = Literal["healthy", "unhealthy"]


@dataclass(frozen=True, slots=True)
class Member:
    """A node's record in the member list. ``reason`` says why its role is what it is,
    ``since`` is when it took that role (seconds since the epoch; 0: not told). ``down``
    is its view of its servers' health in active-active mode: per pool, the servers it
    sees down (see :mod:`ninelives.cluster.sharing`). ``priority`` is its claim to take
    the lead back (``cluster.priority``)."""

    name: str
    address: str
    role: Role
    health: MemberHealth
    reason: str = ""
    since: float = 0.0
    down: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    priority: int = 0

    @property
    def key(self) -> str:
        return MEMBERS_PREFIX + self.name

    def to_json(self) -> str:
        return json.dumps(
            {"name": self.name, "address": self.address, "role": self.role,
             "health": self.health, "reason": self.reason, "since": self.since,
             "down": {pool: list(names) for pool, names in self.down.items()},
             "priority": self.priority},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Member:
        """Parse a record; raise ValueError naming what is wrong with it."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {text[:80]!r}")
        role, health = data.get("role"), data.get("health")
        if role not in ("leader", "follower", "active"):
            raise ValueError(f"unknown role {role!r}")
        if health not in ("healthy", "unhealthy"):
            raise ValueError(f"unknown health {health!r}")
        name, address, reason = data.get("name"), data.get("address"), data.get("reason", "")
        if not (isinstance(name, str) and isinstance(address, str) and isinstance(reason, str)):
            raise ValueError(f"expected name, address and reason as strings in {text[:80]!r}")
        since, priority = data.get("since", 0.0), data.get("priority", 0)
        if not isinstance(since, int | float) or isinstance(since, bool):
            raise ValueError(f"expected since as a number in {text[:80]!r}")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ValueError(f"expected priority as a whole number in {text[:80]!r}")
        down = data.get("down", {})
        if not isinstance(down, dict) or not all(
            isinstance(names, list) and all(isinstance(n, str) for n in names)
            for names in down.values()
        ):
            raise ValueError(f"expected down as pools of server names in {text[:80]!r}")
        return cls(name=name, address=address, role=role, health=health, reason=reason,
                   since=float(since), priority=priority,
                   down={pool: tuple(names) for pool, names in down.items()})


class Watch(Protocol):
    """Changes below a prefix, from the moment ``__aenter__`` returned.

    Entering establishes the watch (so nothing that happens after it is missed);
    iterating yields changes in order; leaving stops it. If the store is lost the
    iterator raises :class:`CoordinatorUnavailable`: the caller reads the state again
    and starts a new watch.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def __aiter__(self) -> AsyncIterator[Change]: ...


class Coordinator(Protocol):
    """What a node needs from the shared store; see the module text for the contract."""

    @property
    def ttl(self) -> float:
        """The time to live asked for every lease this coordinator grants, in seconds."""
        ...

    async def acquire(self, key: str, value: str) -> Lease | None:
        """Create ``key`` bound to a new lease unless someone holds it; None if held."""
        ...

    async def renew(self, lease: Lease) -> Lease:
        """Extend the lease (a new deadline); raise LeaseLost if it or its key is gone."""
        ...

    async def release(self, lease: Lease) -> None:
        """Delete the key and end the lease; nothing happens if it is already gone."""
        ...

    async def get(self, key: str) -> Entry | None:
        ...

    async def compare_and_set(self, key: str, value: str, expected: int | None) -> Entry:
        """Write ``key`` if its version is ``expected`` (None: if absent); raise Conflict."""
        ...

    def watch(self, prefix: str) -> Watch:
        ...

    async def register(self, member: Member, lease: Lease | None = None) -> Lease:
        """Publish this node's record under a new lease, or update it under ``lease``.

        A new registration replaces a record of the same name (a node that restarted
        replaces the record its previous run left).
        """
        ...

    async def members(self) -> list[Member]:
        """Every registered node whose lease is alive, by name."""
        ...

    async def close(self) -> None:
        ...


@runtime_checkable
class VisibleRenewals(Protocol):
    """What a coordinator offers when every successful renewal writes its key again.

    Each renewal then gives the key a new ``version``, and a follower that sees a version
    stay the same for a whole lease knows the holder renewed nothing since: it may end that
    lease at once rather than wait for the store to notice (etcd looks for expired leases
    every 500 ms). :mod:`ninelives.cluster.election` says when, and why that is safe.
    ``etcd`` offers this; ``local`` does not (its renewals write only the expiry, and its
    expired leases are gone at their time anyway).
    """

    async def granted_ttl(self, entry: Entry) -> float | None:
        """The TTL granted to the lease ``entry`` is bound to; None if that lease is gone."""
        ...

    async def revoke_unrenewed(self, entry: Entry) -> bool:
        """Delete the key if it is still at ``entry.version``, then end its lease.

        False when the key changed meanwhile (the holder renewed, or it is gone): nothing
        was deleted.
        """
        ...


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key above every key starting with ``prefix`` (etcd's range_end)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\x00"  # etcd: every key
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


async def bounded(phase: Phase, work: Awaitable[T], limit: float) -> T:
    """A coordinator call that answers within ``limit`` seconds or is unavailable."""
    try:
        return await asyncio.wait_for(work, limit)
    except TimeoutError:
        raise CoordinatorUnavailable(phase, f"no answer within {limit:.2f}s") from None
