"""How fast the uptime store answers a year for a large node, and how large a year is.

Not a test. Run: ``.venv/bin/python bench/uptime_bench.py`` (``--servers``, ``--days``,
``--keep DIR`` to keep the database). It builds a store with a year of history:

- 1,000 servers in 50 pools of 20, each pool two tiers of 10 (providers ``cloud-a`` and
  ``cloud-b``) and a listener in front of it; one node;
- per server, outages at 3 a month on average (Poisson), each ``up -> falling -> down ->
  rising -> up`` with a log-normal duration (median 2 minutes, a few hours at worst), and
  5 check blips a month (``up -> falling -> up``); twice a year a whole provider of a pool
  fails for 20 minutes (its pool serves from the other tier); pools' states follow from
  their servers' as the node computes them; three node restarts of 30 s;
- request counts for every listener, pool, provider and server, as the writer would have
  left them after a year of samples: every bucket of every resolution still kept;
- a weekly maintenance window (Sunday 02:00 UTC, 1h) for everything.

The transitions go through :class:`UptimeStore` itself (its writer process, in batches), so
the time to record them is measured too; the request buckets are inserted directly. Then
housekeeping runs (compaction of intervals older than a week), and the report for 1 year
over every entity is built the way ``GET /v1/uptime?window=1y`` builds it (read, compute,
JSON), a few times.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import time as time_of_day
from pathlib import Path
from zoneinfo import ZoneInfo

from ninelives.events import Event
from ninelives.uptime.api import encode_report
from ninelives.uptime.maintenance import MaintenanceRule
from ninelives.uptime.report import Topology, uptime_report
from ninelives.uptime.schema import LEVELS
from ninelives.uptime.store import UptimeStore

DAY = 86_400.0
MONTH = 30 * DAY
POOL_SIZE = 20
RUNS = 5

Change = tuple[float, str, str, str, str]  # (time, kind, entity, state, reason)


def server_changes(rng: random.Random, name: str, start: float, end: float) -> list[Change]:
    out: list[Change] = [(start, "server", name, "up", "1 check passed: HTTP 200")]
    t = start
    while True:
        t += rng.expovariate(3 / MONTH)
        if t >= end - 3600:
            break
        length = min(4 * 3600, rng.lognormvariate(math.log(120), 1.0))
        out += [
            (t, "server", name, "falling", "1 check failed: connect refused"),
            (t + 2, "server", name, "down", "2 checks failed: connect refused"),
            (t + 2 + length, "server", name, "rising", "1 check passed: HTTP 200"),
            (t + 4 + length, "server", name, "up", "2 checks passed: HTTP 200"),
        ]
        t += length + 4
    blip = start
    while True:
        blip += rng.expovariate(5 / MONTH)
        if blip >= end - 60:
            break
        out += [(blip, "server", name, "falling", "1 check failed: timed out"),
                (blip + 1, "server", name, "up", "1 check passed: HTTP 200")]
    return out


def outage(rng: random.Random, servers: list[str], start: float, end: float) -> list[Change]:
    """A provider down for 20 minutes: all its servers at once."""
    t = rng.uniform(start, end - 3600)
    out: list[Change] = []
    for name in servers:
        out += [(t, "server", name, "down", "2 checks failed: no route to host"),
                (t + 1200, "server", name, "up", "2 checks passed: HTTP 200")]
    return out


def pool_changes(pool: str, tiers: list[list[str]], changes: list[Change]) -> list[Change]:
    """The pool's shown state over time from its servers' (as Pool.refresh computes it)."""
    in_service = {"up", "falling"}
    up: dict[str, bool] = {}
    tier_of = {name: i for i, tier in enumerate(tiers) for name in tier}
    state = "unchecked"
    out: list[Change] = []
    for at, _, name, new, _ in sorted(c for c in changes if c[2] in tier_of):
        up[name] = new in in_service
        counts = [sum(1 for s in tier if up.get(s)) for tier in tiers]
        if counts[0]:
            now, why = "up", f"{counts[0]} of {sum(map(len, tiers))} servers available"
        elif counts[1]:
            now, why = "backup", "no server of cloud-a available; serving from cloud-b"
        else:
            now, why = "down", "no server available"
        if now != state:
            out.append((at, "pool", pool, now, why))
            state = now
    return out


def history(rng: random.Random, servers: int, start: float, end: float) -> tuple[
    Topology, list[Change]
]:
    pools = []
    changes: list[Change] = []
    for p in range(servers // POOL_SIZE):
        pool = f"pool{p:02d}"
        names = [f"s{i:04d}" for i in range(p * POOL_SIZE, (p + 1) * POOL_SIZE)]
        tiers = [names[: POOL_SIZE // 2], names[POOL_SIZE // 2:]]
        full = [f"{pool}/{n}" for n in names]
        own: list[Change] = []
        for name in full:
            own += server_changes(rng, name, start, end)
        for tier in (0, 1):
            own += outage(rng, [f"{pool}/{n}" for n in tiers[tier]], start, end)
            own += outage(rng, [f"{pool}/{n}" for n in tiers[tier]], start, end)
        changes += own
        changes += pool_changes(pool, [[f"{pool}/{n}" for n in t] for t in tiers], own)
        providers = [(n, "cloud-a") for n in tiers[0]] + [(n, "cloud-b") for n in tiers[1]]
        pools.append((pool, tuple(providers)))
        changes.append((start, "listener", f"web{p:02d}", "listening", "bound"))
    for restart in (0.25, 0.5, 0.75):
        t = start + restart * (end - start)
        for p in range(servers // POOL_SIZE):
            changes += [(t, "listener", f"web{p:02d}", "down", "node not running: stopped"),
                        (t + 30, "listener", f"web{p:02d}", "listening", "bound")]
        changes += [(t, "node", "lb-1", "down", "node not running: stopped"),
                    (t + 30, "node", "lb-1", "up", "serving")]
    changes.append((start, "node", "lb-1", "up", "serving"))
    listeners = tuple((f"web{p:02d}", pool) for p, (pool, _) in enumerate(pools))
    return Topology("lb-1", listeners, tuple(pools)), sorted(changes)


def request_rows(topology: Topology, now: float, rng: random.Random) -> Iterator[tuple[int, ...]]:
    """(resolution, bucket, entity key index, n0..n5) for every bucket a year leaves."""
    keys = sorted(topology.keys() - {("node", topology.node)})
    for resolution, keep in LEVELS:
        span = 365 * DAY if keep is None else keep
        first = int((now - span) // resolution) * resolution
        for bucket in range(first, int(now) + 1, resolution):
            for index in range(len(keys)):
                ok = int(resolution * rng.uniform(5, 50))
                yield (resolution, bucket, index, 0, 0, ok, 0, ok // 100, ok // 1000)


def logical_size(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--keep", type=Path, help="build the database in this directory")
    args = parser.parse_args()
    rng = random.Random(2025)
    now = time.time()
    start = now - args.days * DAY
    topology, changes = history(rng, args.servers, start, now)
    directory = args.keep or Path(tempfile.mkdtemp(prefix="uptime-bench-"))
    path = directory / "uptime.db"
    path.unlink(missing_ok=True)
    # The store's clock stands at the start of the history while it is recorded, so its
    # own hourly housekeeping finds nothing old yet; the clock then moves to now and
    # housekeeping (compaction of a year) is timed on its own.
    clock = [start]
    store = UptimeStore(path, clock=lambda: clock[0])
    store.open("lb-1")

    began = time.perf_counter()
    for n, (at, kind, entity, state, reason) in enumerate(changes):
        if kind == "node":
            store.mark(kind, entity, state, reason, at)
        else:
            store.record(Event(n, at, kind, entity, "?", state, reason))  # type: ignore[arg-type]
    enqueue_s = time.perf_counter() - began
    store.flush(timeout=600)
    record_s = time.perf_counter() - began

    keys = sorted(topology.keys() - {("node", topology.node)})
    conn = sqlite3.connect(path, isolation_level=None)
    ids = {}
    for kind, name in keys:
        row = conn.execute("SELECT id FROM entity WHERE kind = ? AND name = ?", (kind, name))
        found = row.fetchone()
        if found is None:
            found = (conn.execute("INSERT INTO entity (kind, name) VALUES (?, ?)",
                                  (kind, name)).lastrowid,)
        ids[kind, name] = found[0]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ((r[0], r[1], ids[keys[r[2]]], *r[3:]) for r in request_rows(topology, now, rng)),
    )
    conn.execute("COMMIT")
    conn.close()

    rows_before = _count(path, "interval")
    clock[0] = now
    began = time.perf_counter()
    store.housekeep()
    store.flush(timeout=600)
    housekeeping_s = time.perf_counter() - began
    rows_after = _count(path, "interval")

    rules = [MaintenanceRule(None, 3600.0, ZoneInfo("UTC"), "weekly patching", (6,),
                             at=time_of_day(2, 0))]
    transitions = len(changes)
    del changes
    # As `ninelives run` does once it serves: what lives as long as the process is kept
    # out of the cyclic GC's scans (here, the topology and the bench's own objects).
    gc.collect()
    gc.freeze()
    timings, computing = [], []
    body = b""
    for _ in range(RUNS):
        began = time.perf_counter()
        report = uptime_report(store, topology, rules, now - 365 * DAY, now, now)
        computed = time.perf_counter()
        body = encode_report(report)
        timings.append(time.perf_counter() - began)
        computing.append(computed - began)
    store.close()
    entities = report["entities"]
    incidents = sum(e["incident_count"] for e in entities)
    result = {
        "servers": args.servers,
        "entities": len(entities),
        "transitions": transitions,
        "record_s": round(record_s, 2),
        "transitions_per_s": round(transitions / record_s),
        "enqueue_us_per_transition": round(enqueue_s / transitions * 1e6, 2),
        "interval_rows_before_compaction": rows_before,
        "interval_rows_after_compaction": rows_after,
        "housekeeping_s": round(housekeeping_s, 2),
        "request_rows": _count(path, "requests"),
        "store_bytes": logical_size(path),
        "file_bytes": path.stat().st_size,
        "report_1y_s_min": round(min(timings), 3),
        "report_1y_s_median": round(statistics.median(timings), 3),
        "of_which_read_and_compute_s_median": round(statistics.median(computing), 3),
        "report_bytes": len(body),
        "incidents_1y": incidents,
    }
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value:,}" if isinstance(value, int) else
              f"{key:<{width}}  {value}")
    print(json.dumps(result))
    if args.keep is None:
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


if __name__ == "__main__":
    main()
