"""Balancing algorithms: which candidate server takes the next request.

Every balancer is a small object with one method, ``pick(candidates, key)``, called
on every request with ``Pool.candidates`` (an immutable tuple of the available
servers of the active tier, rebuilt only when availability or weight changes) and
the hash key (client IP, header or cookie value) or None. The per-request work is
a few attribute reads; anything derived from the candidate set (weights, rotation
state, Maglev table) is recomputed only when the tuple object changes, which the
balancers notice with an identity check (``candidates is self._last``).

Weights are read when the candidate tuple changes, not on every pick: the pool
rebuilds the tuple whenever a weight changes (``Pool.set_weight``). Candidates have
weight >= 1 (a weight-0 server is not available); a weight below 1 is treated as 1
rather than allowed to stall an algorithm.

A server in slow start (``ninelives.slow_start``) has a ``ramp`` below 1: roundrobin,
leastconn and random2 then give it that share of its weight. The pool rebuilds the tuple
as the ramp moves (a coarse tick), so a ramp costs a pick nothing either. The hash
balancer ignores ramps: a ramp would move keys at every step.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from hashlib import blake2b
from itertools import accumulate, cycle, islice
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import random

# Maglev lookup table size. It must be prime so that every skip in 1..M-1 walks a
# full permutation. 65537 is Envoy's default: with M >= 100 x servers (about 650
# servers here) the share of each server is exact to within 1 % and removing one of
# N servers moves about 1/N of the keys (1.02/N at N=10, 1.23/N at N=50; 5003 would
# give 1.12/N and 1.84/N). The price is the rebuild, 20-70 ms of CPU in pure Python
# (5003 would take 3-4 ms), paid on the first pick after the membership changes and
# cached per membership, so a flapping server costs it once.
TABLE_SIZE = 65537

# Key -> table slot memo for the hash balancer. Clients (IPs, cookies) repeat, and a
# dict hit (~40 ns) is much cheaper than a blake2b digest (~600 ns).
_SLOT_MEMO_SIZE = 8192
# Longer keys (a header or cookie value can be kilobytes) are hashed every time, so a
# client cannot fill the memo with large keys.
_SLOT_MEMO_KEY_MAX = 64
# Maglev tables kept per balancer, so that a server flapping between two states
# does not rebuild a table on every flap.
_TABLE_CACHE_SIZE = 4


class Backend(Protocol):
    """What a balancer reads from a server (``ninelives.pool.Server`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> int: ...

    @property
    def active(self) -> int:
        """Requests (http) or connections (tcp) in flight; the proxy keeps it current."""
        ...

    @property
    def ramp(self) -> float:
        """The share of its weight the server takes: below 1.0 during slow start."""
        ...


B = TypeVar("B", bound=Backend)


class Balancer(Protocol):
    def pick(self, candidates: tuple[B, ...], key: bytes | None) -> B | None:
        """The candidate for the next request; None only when there are no candidates."""
        ...


# While a candidate is ramping, weights are counted in hundredths, so that a tenth of
# weight 1 is still a whole number; shares do not change with the unit.
RAMP_SCALE = 100


def _weights(candidates: Sequence[Backend]) -> list[int]:
    return [w if w >= 1 else 1 for w in (c.weight for c in candidates)]


def _shares(candidates: Sequence[Backend]) -> list[int]:
    """Weights with slow start applied: each candidate's weight times its ramp."""
    if all(c.ramp >= 1.0 for c in candidates):
        return _weights(candidates)
    return [max(1, round(c.weight * min(c.ramp, 1.0) * RAMP_SCALE)) for c in candidates]


class RoundRobin:
    """Smooth weighted round robin, nginx's algorithm.

    On each pick every server's ``current`` grows by its weight, the largest wins and
    loses the total weight. Weights 5:1:1 give ``a a b a c a a`` rather than a burst
    of five ``a``; over any prefix of picks each server's count stays within a pick
    or so of its exact share (exact after each cycle of total-weight picks). Equal
    weights (the usual case) skip all of that for an index rotation. ``current``
    values are kept by server name across candidate changes, so a server coming back
    does not restart everybody's cycle.
    """

    __slots__ = ("_current", "_equal", "_last", "_names", "_next", "_total", "_weights")

    def __init__(self) -> None:
        self._last: tuple[Backend, ...] | None = None
        self._next = 0
        self._equal = True
        self._names: tuple[str, ...] = ()
        self._weights: list[int] = []
        self._current: list[int] = []
        self._total = 0

    def _rebuild(self, candidates: tuple[Backend, ...]) -> None:
        weights = _shares(candidates)
        names = tuple(c.name for c in candidates)
        equal = len(set(weights)) <= 1
        if equal:
            self._current = []
        else:
            kept = dict(zip(self._names, self._current, strict=True)) if not self._equal else {}
            self._current = [kept.get(name, 0) for name in names]
        self._last = candidates
        self._names = names
        self._weights = weights
        self._total = sum(weights)
        self._equal = equal

    def pick(self, candidates: tuple[B, ...], key: bytes | None) -> B | None:
        if candidates is not self._last:
            if not candidates:
                return None
            self._rebuild(candidates)
        if self._equal:
            i = self._next
            if i >= len(candidates):
                i = 0
            self._next = i + 1
            return candidates[i]
        current = self._current
        best = 0
        top = -(1 << 62)
        for i, w in enumerate(self._weights):
            value = current[i] + w
            current[i] = value
            if value > top:
                top = value
                best = i
        current[best] -= self._total
        return candidates[best]


class LeastConn:
    """Fewest ``active / weight`` wins; ties go to the next server in rotation.

    The scan starts one position later on every pick, so servers with equal load share
    the traffic instead of the first one taking it all. An idle server ends the scan:
    nothing beats zero.
    """

    __slots__ = ("_equal", "_last", "_next", "_ring", "_weight_ring")

    def __init__(self) -> None:
        self._last: tuple[Backend, ...] | None = None
        # candidates twice over, so that a rotation is one slice. Typed Any because it
        # holds the very objects of the current ``candidates`` (rebuilt whenever that
        # tuple changes), whose type is the caller's B.
        self._ring: tuple[Any, ...] = ()
        self._weight_ring: tuple[int, ...] = ()
        self._equal = True
        self._next = 0

    def pick(self, candidates: tuple[B, ...], key: bytes | None) -> B | None:
        n = len(candidates)
        if n < 2:
            return candidates[0] if n else None
        if candidates is not self._last:
            self._last = candidates
            self._ring = candidates + candidates
            weights = tuple(_shares(candidates))
            self._weight_ring = weights + weights
            self._equal = len(set(weights)) == 1
        start = self._next
        if start >= n:
            start = 0
        self._next = start + 1
        window: tuple[B, ...] = self._ring[start : start + n]
        best = window[0]
        low = best.active
        if not low:
            return best
        if self._equal:
            for server in window:
                active = server.active
                if active < low:
                    if not active:
                        return server
                    best, low = server, active
            return best
        low_weight = self._weight_ring[start]
        for server, weight in zip(window, self._weight_ring[start : start + n], strict=True):
            active = server.active
            if not active:
                return server
            if active * low_weight < low * weight:  # active/weight < low/low_weight
                best, low, low_weight = server, active, weight
        return best


class RandomTwo:
    """Power of two choices: two distinct candidates drawn at random (by weight), the
    less loaded (``active / weight``) wins, the first drawn on a tie.

    Nearly as good as leastconn at spreading load, without its herd behaviour when
    several balancers see the same stale counts. HAProxy's default since 3.3.
    """

    __slots__ = ("_cumulative", "_equal", "_last", "_random", "_total")

    def __init__(self, rng: random.Random) -> None:
        self._random = rng.random
        self._last: tuple[Backend, ...] | None = None
        self._equal = True
        self._cumulative: list[int] = []
        self._total = 0

    def pick(self, candidates: tuple[B, ...], key: bytes | None) -> B | None:
        n = len(candidates)
        if n < 2:
            return candidates[0] if n else None
        if candidates is not self._last:
            self._last = candidates
            weights = _shares(candidates)
            self._equal = len(set(weights)) == 1
            self._cumulative = list(accumulate(weights))
            self._total = self._cumulative[-1]
        rand = self._random
        if self._equal:
            i = int(rand() * n)
            j = int(rand() * (n - 1))
            if j >= i:
                j += 1
            first, second = candidates[i], candidates[j]
            return second if second.active < first.active else first
        cumulative = self._cumulative
        i = bisect_right(cumulative, rand() * self._total)
        w_i = cumulative[i] - (cumulative[i - 1] if i else 0)
        # Second draw by weight among the others: draw over total - w_i and jump over
        # server i's span, so j != i without rejection sampling.
        r = rand() * (self._total - w_i)
        if r >= cumulative[i] - w_i:
            r += w_i
        j = bisect_right(cumulative, r)
        first, second = candidates[i], candidates[j]
        w_j = cumulative[j] - (cumulative[j - 1] if j else 0)
        return second if second.active * w_i < first.active * w_j else first


class First:
    """All traffic to the first candidate in config order; the next takes over only
    when it becomes unavailable (leaves ``candidates``).

    HAProxy's ``first`` fills each server up to its ``maxconn`` before using the next;
    servers have no connection limit here yet, so the first available one takes all.
    Useful to keep a standby warm but idle, or to pack load on as few servers as
    possible.
    """

    __slots__ = ()

    def pick(self, candidates: tuple[B, ...], key: bytes | None) -> B | None:
        return candidates[0] if candidates else None


def _permutation(name: str, size: int) -> tuple[int, int]:
    """Maglev (offset, skip) of a server, from its name only, so every node agrees."""
    digest = blake2b(name.encode("utf-8"), digest_size=16, person=b"ninelives-maglev").digest()
    offset = int.from_bytes(digest[:8], "little") % size
    skip = int.from_bytes(digest[8:], "little") % (size - 1) + 1
    return offset, skip


def maglev_table(members: Sequence[tuple[str, int]], size: int = TABLE_SIZE) -> array[int]:
    """The Maglev lookup table of ``members`` (name, weight): slot -> member index.

    Members take turns claiming the next free slot of their own permutation of the
    table (Eisenbud et al., NSDI 2016); a member of weight w takes a turn in w of every
    max-weight rounds (Envoy's weighted fill), so shares follow weights. The result
    depends only on the members and their order; the caller sorts them by name.

    About M*ln(M) probes; 20-70 ms for M=65537 on CPython 3.11, dominated by the M
    claims themselves (so a smarter probe for the nearly full table does not help).
    """
    n = len(members)
    if not n:
        raise ValueError("a Maglev table needs at least one member")
    if n > 0xFFFF:
        raise ValueError(f"at most 65535 members, got {n}")
    offsets: list[int] = []
    skips: list[int] = []
    for name, _ in members:
        offset, skip = _permutation(name, size)
        offsets.append(offset)
        skips.append(skip)
    weights = [w if w >= 1 else 1 for _, w in members]
    claims = islice(
        cycle(range(n)) if len(set(weights)) == 1 else _weighted_turns(weights), size
    )
    table = [-1] * size
    probe = offsets[:]  # the next slot each member will try
    for i in claims:
        slot = probe[i]
        skip = skips[i]
        while table[slot] >= 0:
            slot = (slot + skip) % size
        table[slot] = i
        probe[i] = (slot + skip) % size
    return array("H", table)


def _weighted_turns(weights: list[int]) -> Iterator[int]:
    """Member indices in claiming order: every round, a member of weight w claims if
    it is not ahead of w/max_weight of the rounds so far (Envoy's weighted Maglev)."""
    top = max(weights)
    credit = [0] * len(weights)
    turn = 0
    while True:
        turn += 1
        for i, weight in enumerate(weights):
            if turn * weight >= credit[i]:
                credit[i] += top
                yield i


def key_slot(key: bytes, size: int = TABLE_SIZE) -> int:
    """The table slot of a hash key: blake2b, stable across nodes, processes, versions."""
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "little") % size


class MaglevHash:
    """Consistent hashing (Maglev): the same key goes to the same server, on every
    node, and removing one of N servers moves only about 1/N of the keys.

    The table is computed from server names and weights only (members sorted by name),
    so independent nodes build identical tables. A pick is a memoised key hash and two
    index reads. Without a key, it rotates like roundrobin.
    """

    __slots__ = ("_last", "_memo", "_order", "_rotation", "_size", "_table", "_tables")

    def __init__(self, size: int = TABLE_SIZE) -> None:
        self._size = size
        self._last: tuple[Backend, ...] | None = None
        self._order: tuple[int, ...] = ()  # sorted-member index -> candidate index
        self._table: array[int] = array("H")
        self._tables: OrderedDict[tuple[tuple[str, int], ...], array[int]] = OrderedDict()
        self._memo: dict[bytes, int] = {}
        self._rotation = RoundRobin()

    def _rebuild(self, candidates: tuple[Backend, ...]) -> None:
        order = tuple(sorted(range(len(candidates)), key=lambda i: candidates[i].name))
        weights = _weights(candidates)
        members = tuple((candidates[i].name, weights[i]) for i in order)
        table = self._tables.get(members)
        if table is None:
            table = maglev_table(members, self._size)
            self._tables[members] = table
            if len(self._tables) > _TABLE_CACHE_SIZE:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(members)
        self._last = candidates
        self._order = order
        self._table = table

    def pick(self, candidates: tuple[B, ...], key: bytes | None) -> B | None:
        if key is None:
            return self._rotation.pick(candidates, None)
        if candidates is not self._last:
            if not candidates:
                return None
            self._rebuild(candidates)
        slot = self._memo.get(key)
        if slot is None:
            slot = key_slot(key, self._size)
            if len(key) <= _SLOT_MEMO_KEY_MAX:
                if len(self._memo) >= _SLOT_MEMO_SIZE:
                    self._memo.clear()
                self._memo[key] = slot
        return candidates[self._order[self._table[slot]]]


ALGORITHMS = ("roundrobin", "leastconn", "random2", "hash", "first")


def make_balancer(algorithm: str, rng: random.Random) -> Balancer:
    """A fresh balancer for one pool; ``rng`` is the only source of randomness."""
    if algorithm == "roundrobin":
        return RoundRobin()
    if algorithm == "leastconn":
        return LeastConn()
    if algorithm == "random2":
        return RandomTwo(rng)
    if algorithm == "hash":
        return MaglevHash()
    if algorithm == "first":
        return First()
    raise ValueError(f"unknown balance algorithm {algorithm!r}; expected one of {ALGORITHMS}")
