#!/usr/bin/env python3
"""What recording 10,000 state transitions a second costs the data plane.

Not a test. Run: ``.venv/bin/python bench/uptime_load_bench.py`` (``--rate``,
``--rounds``, ``--duration``, ``--connections``). It starts nginx (two servers) and one
ninelives node in front of them (an HTTP listener on pool ``app``, and a pool
``flappers`` of ``--flappers`` servers that no listener uses), through
``bench/uptime_flood_node.py``: ``ninelives run`` plus a hook that publishes transitions
of the flappers on the node's event log while told to (SIGUSR1 on, SIGUSR2 off). Then
``wrk -t1`` drives the listener in rounds that alternate between "no transitions" and
"``--rate`` transitions a second" (the order swapped every round), and it prints the
throughput of each, the ratio of the means, the transitions the store committed per
second (interval rows, read from the database by another connection) and the CPU time of
the node's event loop thread, of its other threads (the store's feeder) and of the
store's writer process per round.
On a machine shared with other work the rounds spread widely: take the median of the
rounds' ratios, and many rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_load import parse_wrk, run_wrk
from bench_procs import Proc, Processes, StartupError, free_port, wait_http_ok
from bench_servers import READY_TOKEN, _read_ready_line, ensure_packages, start_nginx

HERE = Path(__file__).resolve().parent
SETTLE_DEADLINE_S = 10.0  # for the store to follow a switch on or off
POLL_S = 0.1


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
) -> tuple[Proc, int]:
    log_path = tmp / "ninelives.log"
    argv = [sys.executable, str(HERE / "uptime_flood_node.py"), str(cfg), "--rate", str(rate)]
    argv += ["--publish-only"] if publish_only else []
    proc = procs.start("ninelives", argv, log_path, True)
    line = _read_ready_line(proc, log_path)
    bound = {m.group(1): int(m.group(3)) for m in map(READY_TOKEN.match, line.split()) if m}
    if "web" not in bound:
        raise StartupError(f"readiness line lacks web=: {line!r}")
    wait_http_ok(proc, bound["web"])
    return proc, bound["web"]


def intervals_recorded(db: Path) -> int:
    """Interval rows committed so far (each transition adds one)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM interval").fetchone()[0])


def settle(db: Path, on: bool, rate: float) -> None:
    """Wait until the store commits transitions at a quarter of ``rate`` or more (on), or
    commits none between two reads (off: the writer has caught up)."""
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    last = intervals_recorded(db)
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        now = intervals_recorded(db)
        if (now - last >= rate * POLL_S / 4) if on else now == last:
            return
        last = now
    raise StartupError(f"the store did not settle within {SETTLE_DEADLINE_S}s (on={on})")


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10_000.0, help="transitions a second")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each kind")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk round")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--flappers", type=int, default=200, help="servers that flap")
    parser.add_argument("--publish-only", action="store_true",
                        help="publish the transitions on the event log but do not record "
                             "them (to tell the cost of the recording from the rest)")
    args = parser.parse_args()
    ensure_packages()
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="ninelives-uptime-load-"))
    rows: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    try:
        servers = (free_port(), free_port())
        start_nginx(procs, tmp, servers)
        proc, port = start_node(procs, tmp, write_config(tmp, servers, args.flappers),
                                args.rate, args.publish_only)
        db = tmp / "state" / "uptime.db"
        run_wrk(port, 1, args.connections)  # warm-up
        for round_no in range(1, args.rounds + 1):
            order = ("off", "on") if round_no % 2 else ("on", "off")
            for mode in order:
                os.kill(proc.pid, signal.SIGUSR1 if mode == "on" else signal.SIGUSR2)
                if not (args.publish_only and mode == "on"):  # nothing to see in the store
                    settle(db, mode == "on", args.rate)
                rows_before = intervals_recorded(db)
                cpu_before, loop_before, writer_before = cpu_s(proc.pid)
                began = time.monotonic()
                result = parse_wrk(run_wrk(port, args.duration, args.connections),
                                   "ninelives", mode, round_no)
                elapsed = time.monotonic() - began
                cpu_after, loop_after, writer_after = cpu_s(proc.pid)
                row = {
                    "requests_per_s": result.requests_per_s,
                    "p99_ms": result.p99_ms,
                    "errors": result.errors,
                    "transitions_per_s": (intervals_recorded(db) - rows_before) / elapsed,
                    "loop_cpu_s_per_s": (loop_after - loop_before) / elapsed,
                    "other_cpu_s_per_s": (cpu_after - loop_after - cpu_before + loop_before)
                    / elapsed,
                    "writer_cpu_s_per_s": (writer_after - writer_before) / elapsed,
                }
                rows[mode].append(row)
                print(f"round {round_no} transitions {mode:>3}: "
                      f"{row['requests_per_s']:>9,.0f} req/s, p99 {row['p99_ms']:.2f} ms, "
                      f"{row['transitions_per_s']:>7,.0f} transitions/s committed, "
                      f"CPU s/s: loop {row['loop_cpu_s_per_s']:.2f}, "
                      f"other threads {row['other_cpu_s_per_s']:.2f}, "
                      f"writer process {row['writer_cpu_s_per_s']:.2f}; errors {row['errors']}",
                      file=sys.stderr)
                if not proc.alive():
                    raise StartupError(f"ninelives exited:\n{proc.log_tail()}")
    except (StartupError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        for started in procs.procs:
            print(f"--- {started.name} log ---\n{started.log_tail()}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    def mean(mode: str, key: str) -> float:
        return statistics.fmean(r[key] for r in rows[mode])

    ratios = [on["requests_per_s"] / off["requests_per_s"]
              for on, off in zip(rows["on"], rows["off"], strict=True)]
    summary = {
        "rate_asked": args.rate,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "req_per_s_without": round(mean("off", "requests_per_s")),
        "req_per_s_with": round(mean("on", "requests_per_s")),
        "ratio": round(mean("on", "requests_per_s") / mean("off", "requests_per_s"), 3),
        "median_round_ratio": round(statistics.median(ratios), 3),
        "round_ratios": [round(r, 3) for r in ratios],
        "transitions_per_s_committed": round(mean("on", "transitions_per_s")),
        "loop_cpu_us_per_request_without": round(
            1e6 * mean("off", "loop_cpu_s_per_s") / mean("off", "requests_per_s"), 1),
        "loop_cpu_us_per_request_with": round(
            1e6 * mean("on", "loop_cpu_s_per_s") / mean("on", "requests_per_s"), 1),
        "other_threads_cpu_without": round(mean("off", "other_cpu_s_per_s"), 3),
        "other_threads_cpu_with": round(mean("on", "other_cpu_s_per_s"), 3),
        "writer_process_cpu_without": round(mean("off", "writer_cpu_s_per_s"), 3),
        "writer_process_cpu_with": round(mean("on", "writer_cpu_s_per_s"), 3),
        "p99_ms_without": round(mean("off", "p99_ms"), 2),
        "p99_ms_with": round(mean("on", "p99_ms"), 2),
        "errors": sum(int(r["errors"]) for mode in rows.values() for r in mode),
    }
    width = max(map(len, summary))
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
