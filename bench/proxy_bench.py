#!/usr/bin/env python3
"""Benchmark ninelives against HAProxy 2.6 in front of the same two nginx servers.

Throughput and p99 latency with wrk (HTTP listener, then TCP listener), rounds
alternating between the proxies, and resident memory with N idle client
connections. Stdlib only; run as root (it may apt-get install nginx, haproxy,
wrk). See bench/README.md for what each number means.

    python bench/proxy_bench.py [--duration 5] [--rounds 2] [--connections 50]
                                [--idle 10000] [--skip-memory] [--only haproxy]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_load import parse_wrk, run_wrk
from bench_memory import measure_memory, tree_rss_kib
from bench_procs import Proc, Processes, StartupError, free_port, raise_nofile
from bench_report import PROTOCOLS, PROXIES, Results, render
from bench_servers import (
    ensure_packages,
    ninelives_command,
    start_haproxy,
    start_nginx,
    start_ninelives,
)

WARMUP_S = 1
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per proxy and protocol")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--idle", type=int, default=10000, help="idle connections for memory")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--only", choices=PROXIES, help="benchmark one proxy (development)")
    parser.add_argument("--json", type=Path, default=RESULTS_PATH, help="where to write results")
    args = parser.parse_args(argv)
    for name in ("duration", "rounds", "connections", "idle"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _check_alive(proxies: dict[str, tuple[Proc, dict[str, int]]], results: Results) -> None:
    for name, (proc, _) in list(proxies.items()):
        if not proc.alive():
            results.failures.append(
                f"{name} exited with {proc.popen.returncode} during the run:\n{proc.log_tail()}"
            )
            del proxies[name]


def run(args: argparse.Namespace, procs: Processes, tmp: Path) -> Results:
    nofile = raise_nofile()
    idle = args.idle
    if idle > nofile - 200:
        idle = nofile - 200
        print(
            f"fd limit {nofile}: holding {idle} idle connections, not {args.idle}", file=sys.stderr
        )
    wanted = [args.only] if args.only else list(PROXIES)
    load_start = round(os.getloadavg()[0], 2)
    results = Results(
        settings={
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "wrk_threads": 1,
            "idle_conns": idle,
            "nofile": nofile,
            "proxies": wanted,
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "haproxy": subprocess.run(
                ["haproxy", "-v"], capture_output=True, text=True, check=False
            ).stdout.splitlines()[0],
            "python": sys.version.split()[0],
            # compiled (mypyc) or pure Python: see setup.py
            "ninelives": subprocess.run(
                [*ninelives_command(), "--version"], capture_output=True, text=True,
                check=False,
            ).stdout.strip(),
            "loadavg_start": load_start,
        }
    )
    if load_start > 0.5:
        print(
            f"note: load average {load_start} before starting; "
            "other work on this machine makes the numbers noisy",
            file=sys.stderr,
        )

    servers = (free_port(), free_port())
    start_nginx(procs, tmp, servers)
    proxies: dict[str, tuple[Proc, dict[str, int]]] = {}
    for name in wanted:
        try:
            if name == "haproxy":
                proxies[name] = start_haproxy(procs, tmp, servers, nofile)
            else:
                proxies[name] = start_ninelives(procs, tmp, servers)
        except StartupError as exc:
            started = next((p for p in procs.procs if p.name == name), None)
            tail = started.log_tail() if started else ""
            results.failures.append(f"{name} did not start: {exc}\n{tail}")
    for name, (_, ports) in proxies.items():
        print(f"{name}: http :{ports['http']}, tcp :{ports['tcp']}", file=sys.stderr)

    if not args.skip_memory:
        for name in wanted:
            if name in proxies:
                proc, ports = proxies[name]
                print(f"memory: {name}, {idle} idle connections", file=sys.stderr)
                results.memory.append(measure_memory(name, proc, ports["http"], idle))
        _check_alive(proxies, results)

    for protocol in PROTOCOLS:
        for name in wanted:  # warm-up, not recorded: first connections, lazy allocations
            if name in proxies:
                run_wrk(proxies[name][1][protocol], WARMUP_S, args.connections)
        for round_no in range(1, args.rounds + 1):
            for name in wanted:
                if name not in proxies:
                    continue
                port = proxies[name][1][protocol]
                output = run_wrk(port, args.duration, args.connections)
                result = parse_wrk(output, name, protocol, round_no)
                results.runs.append(result)
                print(
                    f"{protocol} round {round_no} {name}: {result.requests_per_s:,.0f} req/s, "
                    f"p99 {result.p99_ms:.2f} ms, errors {result.errors}",
                    file=sys.stderr,
                )
                _check_alive(proxies, results)
    results.settings["loadavg_end"] = round(os.getloadavg()[0], 2)
    results.rss_after_load_kib = {
        name: tree_rss_kib(proc.pid) for name, (proc, _) in proxies.items()
    }
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    ensure_packages()
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="ninelives-bench-"))
    try:
        try:
            results = run(args, procs, tmp)
        except (StartupError, RuntimeError, OSError) as exc:  # nginx down, wrk failed, ...
            print(f"error: {exc}", file=sys.stderr)
            for proc in procs.procs:
                print(f"--- {proc.name} log ---\n{proc.log_tail()}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(render(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results.to_json(), indent=2) + "\n")
    print(f"\nresults written to {args.json}", file=sys.stderr)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
