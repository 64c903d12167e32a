"""Micro-benchmark of ``Balancer.pick``: nanoseconds per pick, 2 and 20 servers.

Not a test. Run: ``.venv/bin/python bench/balance_bench.py``. Each case builds its
state (Maglev table included) before timing, then times a bounded number of picks
with the best of a few repeats, as ``timeit`` recommends.
"""

from __future__ import annotations

import random
import time
import timeit
from dataclasses import dataclass

from ninelives.balance import ALGORITHMS, TABLE_SIZE, maglev_table, make_balancer

PICKS = 20_000
REPEATS = 5


@dataclass(slots=True)
class FakeServer:
    name: str
    weight: int = 1
    active: int = 0


def servers(count: int, weighted: bool, busy: bool) -> tuple[FakeServer, ...]:
    rng = random.Random(7)
    return tuple(
        FakeServer(
            f"app-{i}",
            weight=(i % 3) + 1 if weighted else 1,
            active=rng.randrange(1, 50) if busy else 0,
        )
        for i in range(count)
    )


def ns_per_pick(algorithm: str, candidates: tuple[FakeServer, ...], key: bytes | None) -> float:
    balancer = make_balancer(algorithm, random.Random(1))
    balancer.pick(candidates, key)  # build state outside the timing
    pick = balancer.pick
    timer = timeit.Timer(lambda: pick(candidates, key))
    # the lambda call itself costs ~50 ns; it is included, as the pool pays a call too
    return min(timer.repeat(repeat=REPEATS, number=PICKS)) / PICKS * 1e9


def main() -> None:
    print(f"ns per pick (best of {REPEATS} x {PICKS:,} picks, includes a ~50 ns call)")
    print(f"{'algorithm':<24}{'2 servers':>12}{'20 servers':>12}")
    cases: list[tuple[str, str, bool, bool, bytes | None]] = []
    for algorithm in ALGORITHMS:
        key = b"203.0.113.77" if algorithm == "hash" else None
        cases.append((algorithm, algorithm, False, False, key))
        if algorithm in ("roundrobin", "leastconn", "random2", "hash"):
            cases.append((f"{algorithm} weighted", algorithm, True, False, key))
        if algorithm in ("leastconn", "random2"):
            cases.append((f"{algorithm} busy", algorithm, False, True, key))
            cases.append((f"{algorithm} weighted busy", algorithm, True, True, key))
    cases.append(("hash no key", "hash", False, False, None))
    for label, algorithm, weighted, busy, key in cases:
        row = [ns_per_pick(algorithm, servers(n, weighted, busy), key) for n in (2, 20)]
        print(f"{label:<24}{row[0]:>12.0f}{row[1]:>12.0f}")
    # distinct keys each time: the blake2b digest, not the memo, is what is timed
    balancer = make_balancer("hash", random.Random(1))
    candidates = servers(20, False, False)
    keys = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}".encode() for i in range(PICKS)]
    balancer.pick(candidates, b"warm")
    start = time.perf_counter()
    for key in keys:
        balancer.pick(candidates, key)
    print(f"{'hash, all keys new':<24}{'':>12}{(time.perf_counter() - start) / PICKS * 1e9:>12.0f}")
    for count in (2, 20, 100):
        members = [(f"app-{i}", 1) for i in range(count)]
        start = time.process_time()
        maglev_table(members, TABLE_SIZE)
        took = (time.process_time() - start) * 1e3
        print(f"Maglev table rebuild, M={TABLE_SIZE}, {count} servers: {took:.0f} ms")


if __name__ == "__main__":
    main()
