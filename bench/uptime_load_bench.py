#!/usr/bin/env python3
"""What recording 10,000 state transitions a second costs the data plane.

Not a test. Run: ``.venv/bin/python bench/uptime_load_bench.py`` (``--rate``, ``--pairs``,
``--phase``, ``--connections``). It starts nginx (two servers) and one ninelives node in
front of them (an HTTP listener on pool ``app``, and a pool ``flappers`` of ``--flappers``
servers that no listener uses), through ``bench/uptime_flood_node.py``: ``ninelives run``
plus a hook that publishes transitions of the flappers on the node's event log while told
to (SIGUSR1 on, SIGUSR2 off).

One ``wrk -t1`` drives the listener for the whole run, while the transitions are switched
on and off in phases of ``--phase`` seconds, in pairs (the order drawn at random in each
pair). A phase's throughput is the node's own count of requests answered (``GET
/v1/status``) between ``--settle`` seconds after the switch and its end. Each pair gives a
ratio (with / without), so what drifts on a shared machine over minutes cancels out in
each; it prints the median of the ratios with their middle half, the ratio of the means,
the transitions the store committed per second (intervals, read from the database by
another connection) and the CPU time of the node's event loop thread, of its other
threads (the store's feeder) and of the store's writer process.
On a machine shared with other work the phases spread widely: take many pairs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from bench_load import run_wrk
from bench_procs import Proc, Processes, StartupError, free_port, wait_http_ok
from bench_servers import READY_TOKEN, _read_ready_line, ensure_packages, start_nginx

from ninelives.uptime.batch import COUNT

HERE = Path(__file__).resolve().parent


def write_config(tmp: Path, servers: tuple[int, int], flappers: int) -> Path:
    app = "\n".join(f"      - {{name: s{i}, address: 127.0.0.1:{port}}}"
                    for i, port in enumerate(servers, start=1))
    # The flappers' own checks run once an hour: their transitions come from the hook.
    flapping = "\n".join(f"      - {{name: f{i:03d}, address: 127.0.0.1:{servers[0]}}}"
                         for i in range(flappers))
    cfg = tmp / "ninelives.yaml"
    cfg.write_text(
        f"""node: {{name: bench, state_dir: {tmp / "state"}}}
admin: {{listen: 127.0.0.1:0}}
listeners:
  - {{name: web, bind: 127.0.0.1:0, protocol: http, pool: app}}
pools:
  app:
    health: {{http: {{path: /, expect: 200}}, interval: 2s, timeout: 1s, rise: 2, fall: 3}}
    servers:
{app}
  flappers:
    health: {{tcp: {{}}, interval: 1h}}
    servers:
{flapping}
"""
    )
    return cfg


def start_node(
    procs: Processes, tmp: Path, cfg: Path, rate: float, publish_only: bool
) -> tuple[Proc, int, int]:
    log_path = tmp / "ninelives.log"
    argv = [sys.executable, str(HERE / "uptime_flood_node.py"), str(cfg), "--rate", str(rate)]
    argv += ["--publish-only"] if publish_only else []
    proc = procs.start("ninelives", argv, log_path, True)
    line = _read_ready_line(proc, log_path)
    bound = {m.group(1): int(m.group(3)) for m in map(READY_TOKEN.match, line.split()) if m}
    if "web" not in bound or "admin" not in bound:
        raise StartupError(f"readiness line lacks web= or admin=: {line!r}")
    wait_http_ok(proc, bound["web"])
    return proc, bound["web"], bound["admin"]


def answered(admin: int) -> int:
    """Requests the listener ``web`` has answered so far, by the node's own count."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/v1/status", timeout=5) as answer:
        status = json.load(answer)
    return next(int(listener["requests"]) for listener in status["listeners"]
                if listener["name"] == "web")


def wait_for_load(admin: int, wrk: Proc, deadline_s: float = 10.0) -> None:
    """Until the node answers wrk's requests (its count grows between two reads)."""
    deadline = time.monotonic() + deadline_s
    first = answered(admin)
    while answered(admin) - first < 100:
        if not wrk.alive() or time.monotonic() > deadline:
            raise StartupError(f"no load reached the node within {deadline_s}s:\n"
                               f"{wrk.log_tail()}")
        time.sleep(0.05)


class Recorded:
    """Intervals committed so far: each transition begins one, and a row holds one, or a
    run of them (``later`` says how many more). Only the rows added since the last call
    are read."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.last_row = 0
        self.intervals = 0

    def __call__(self) -> int:
        with closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as conn:
            conn.create_function("more", 1, lambda later: 0 if later is None
                                 else COUNT.unpack_from(later)[0], deterministic=True)
            last, added = conn.execute(
                "SELECT max(id), count(*) + coalesce(sum(more(later)), 0) FROM interval"
                " WHERE id > ?", (self.last_row,)).fetchone()
        if last is not None:
            self.last_row, self.intervals = int(last), self.intervals + int(added)
        return self.intervals


def cpu_s(pid: int) -> tuple[float, float, float]:
    """CPU seconds (user + system) of the process, of its main thread (the event loop; the
    others are the store's feeder and idle workers), and of its children (the store's
    writer process)."""

    def read(stat: str) -> float:
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a child that just exited
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    return (read(f"/proc/{pid}/stat"), read(f"/proc/{pid}/task/{pid}/stat"),
            sum(read(f"/proc/{child}/stat") for child in children))


@dataclass(frozen=True, slots=True)
class Phase:
    requests_per_s: float
    transitions_per_s: float
    loop_cpu: float  # CPU seconds a second
    other_cpu: float
    writer_cpu: float


def measure(proc: Proc, admin: int, recorded: Recorded, mode: str, phase: float,
            settle: float) -> Phase:
    """Switch the transitions on or off, let ``settle`` seconds pass, then measure until
    ``phase`` seconds after the switch."""
    os.kill(proc.pid, signal.SIGUSR1 if mode == "on" else signal.SIGUSR2)
    switched = time.monotonic()
    time.sleep(settle)  # the load runs meanwhile: what is measured starts after it
    requests, intervals = answered(admin), recorded()
    cpu, loop, writer = cpu_s(proc.pid)
    began = time.monotonic()
    time.sleep(max(0.0, switched + phase - began))
    elapsed = time.monotonic() - began
    cpu_after, loop_after, writer_after = cpu_s(proc.pid)
    return Phase(
        requests_per_s=(answered(admin) - requests) / elapsed,
        transitions_per_s=(recorded() - intervals) / elapsed,
        loop_cpu=(loop_after - loop) / elapsed,
        other_cpu=(cpu_after - loop_after - cpu + loop) / elapsed,
        writer_cpu=(writer_after - writer) / elapsed,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10_000.0, help="transitions a second")
    parser.add_argument("--pairs", type=int, default=30, help="pairs of phases (on, off)")
    parser.add_argument("--phase", type=float, default=3.0, help="seconds per phase")
    parser.add_argument("--settle", type=float, default=0.6,
                        help="seconds after a switch before a phase is measured (the "
                             "writer commits what was queued before a switch off)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--flappers", type=int, default=200, help="servers that flap")
    parser.add_argument("--seed", type=int, default=1, help="for the order within pairs")
    parser.add_argument("--publish-only", action="store_true",
                        help="publish the transitions on the event log but do not record "
                             "them (to tell the cost of the recording from the rest)")
    args = parser.parse_args()
    if args.phase <= args.settle:
        parser.error("--phase must be longer than --settle")
    ensure_packages()
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="ninelives-uptime-load-"))
    pairs: list[tuple[Phase, Phase]] = []  # (on, off)
    order = random.Random(args.seed)
    try:
        servers = (free_port(), free_port())
        start_nginx(procs, tmp, servers)
        proc, port, admin = start_node(procs, tmp, write_config(tmp, servers, args.flappers),
                                       args.rate, args.publish_only)
        recorded = Recorded(tmp / "state" / "uptime.db")
        run_wrk(port, 1, args.connections)  # warm-up
        load_s = math.ceil(args.pairs * 2 * args.phase + 10)
        wrk = procs.start("wrk", ["wrk", "-t1", f"-c{args.connections}", f"-d{load_s}s",
                                  f"http://127.0.0.1:{port}/"], tmp / "wrk.log", False)
        wait_for_load(admin, wrk)
        for pair_no in range(1, args.pairs + 1):
            modes = order.sample(("on", "off"), 2)
            got = {mode: measure(proc, admin, recorded, mode, args.phase, args.settle)
                   for mode in modes}
            on, off = got["on"], got["off"]
            pairs.append((on, off))
            print(f"pair {pair_no:>3} ({modes[0]} first): {on.requests_per_s:>9,.0f} req/s "
                  f"with, {off.requests_per_s:>9,.0f} without: "
                  f"{on.requests_per_s / off.requests_per_s:.3f}; "
                  f"{on.transitions_per_s:>7,.0f} transitions/s committed; CPU s/s with: "
                  f"loop {on.loop_cpu:.2f}, other threads {on.other_cpu:.3f}, "
                  f"writer {on.writer_cpu:.3f}", file=sys.stderr)
            for started in (proc, wrk):
                if not started.alive():
                    raise StartupError(f"{started.name} exited:\n{started.log_tail()}")
    except (StartupError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        for started in procs.procs:
            print(f"--- {started.name} log ---\n{started.log_tail()}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    with_, without = [on for on, _ in pairs], [off for _, off in pairs]

    def mean(phases: list[Phase], key: str) -> float:
        return statistics.fmean(getattr(phase, key) for phase in phases)

    ratios = [on.requests_per_s / off.requests_per_s for on, off in pairs]
    spread = (1.96 * statistics.stdev(ratios) / math.sqrt(len(ratios))
              if len(ratios) > 1 else math.inf)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    summary = {
        "rate_asked": args.rate,
        "publish_only": args.publish_only,
        "pairs": args.pairs,
        "phase_s": args.phase,
        "req_per_s_without": round(mean(without, "requests_per_s")),
        "req_per_s_with": round(mean(with_, "requests_per_s")),
        "median_ratio": round(statistics.median(ratios), 3),
        "middle_half_of_ratios": [round(quartiles[0], 3), round(quartiles[2], 3)],
        "ratio_of_means": round(mean(with_, "requests_per_s") / mean(without, "requests_per_s"), 3),
        "mean_ratio": round(statistics.fmean(ratios), 3),
        # The mean of the pairs' ratios give or take 1.96 standard errors: where it would
        # be in 95 runs of 100 if the pairs were independent draws.
        "mean_ratio_95pct": [round(statistics.fmean(ratios) - spread, 3),
                             round(statistics.fmean(ratios) + spread, 3)],
        "transitions_per_s_committed": round(mean(with_, "transitions_per_s")),
        "loop_cpu_us_per_request_without": round(
            1e6 * mean(without, "loop_cpu") / mean(without, "requests_per_s"), 1),
        "loop_cpu_us_per_request_with": round(
            1e6 * mean(with_, "loop_cpu") / mean(with_, "requests_per_s"), 1),
        "other_threads_cpu_with": round(mean(with_, "other_cpu"), 3),
        "writer_process_cpu_with": round(mean(with_, "writer_cpu"), 3),
    }
    width = max(map(len, summary))
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
