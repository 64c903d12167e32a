#!/usr/bin/env python3
"""Speed of failover: HAProxy 2.6 and ninelives in the same run, in front of three demo
backends each, under the same steady GET load, through three faults:

  kill    SIGKILL one backend (it is started again on its port after --down)
  hang    SIGSTOP one backend for --hang, then SIGCONT
  reload  five reloads of the proxy (HAProxy: SIGUSR2 to its master, -W; ninelives:
          SIGHUP, when the build supports it)

The load, the faults and the measurements are those of ``ninelives drill`` (package
``ninelives.drill``), pointed at each proxy's listener; the proxy's own per-server
counters (HAProxy's stats socket, ninelives' admin API) say when the faulty server
stopped getting requests. Every scenario starts fresh proxies and backends. Run it with
the interpreter that has ninelives installed, by path (it imports its sibling module):

    .venv/bin/python bench/failover_bench.py [--rounds 1] [--rate 400] [--only haproxy]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench_procs import free_port, install_missing
from failover_proxies import Haproxy, Ninelives, ninelives_reloads, start_backends

from ninelives.drill.faults import FaultMarks, FaultPlan, inject
from ninelives.drill.load import LoadSpec, clock
from ninelives.drill.processes import ProcessError
from ninelives.drill.report import DrillReport, summarize
from ninelives.drill.runner import interruptible
from ninelives.drill.scenario import Timing, record

PROXIES = ("haproxy", "ninelives")
SCENARIOS = ("kill", "hang", "reload")
SERVERS = ("s1", "s2", "s3")
FAULTY = "s2"
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "failover.json"


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    proxy: str
    round: int
    report: DrillReport | None
    note: str = ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="runs of each scenario per proxy")
    parser.add_argument("--rate", type=float, default=400.0, help="GET requests per second")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--before", type=float, default=2.0, help="seconds before the fault")
    parser.add_argument("--after", type=float, default=3.0, help="seconds after it")
    parser.add_argument("--down", type=float, default=3.0, help="kill: seconds until restart")
    parser.add_argument("--hang", type=float, default=3.0, help="hang: seconds stopped")
    parser.add_argument("--reloads", type=int, default=5)
    parser.add_argument("--reload-every", type=float, default=0.5, help="seconds between")
    parser.add_argument("--only", choices=PROXIES, help="one proxy (developing the harness)")
    parser.add_argument("--scenario", choices=SCENARIOS, action="append",
                        help="run only these scenarios (repeatable)")
    parser.add_argument("--json", type=Path, default=RESULTS_PATH, help="where to write results")
    parser.add_argument("--keep", action="store_true", help="keep each run's configs and logs")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.reloads < 1 or args.rate <= 0:
        parser.error("--rounds and --reloads must be at least 1, --rate positive")
    return args


async def reload_proxy(proxy: Haproxy | Ninelives, count: int, every: float,
                       marks: FaultMarks) -> None:
    assert proxy.reload_signal is not None
    began = clock()
    for n in range(count):
        await asyncio.sleep(max(0.0, began + n * every - clock()))
        os.kill(proxy.pid, proxy.reload_signal)
        at = marks.note(f"reload {n + 1}: {proxy.reload_signal.name} to pid {proxy.pid}")
        if n == 0:
            marks.started = at
        marks.ended = at


async def run_one(args: argparse.Namespace, scenario: str, name: str, round_no: int,
                  reloads: bool) -> Row:
    tmp = Path(tempfile.mkdtemp(prefix=f"ninelives-failover-{name}-{scenario}-"))
    ports = {server: free_port() for server in SERVERS}
    proxy: Haproxy | Ninelives = (
        Haproxy(tmp, ports, free_port()) if name == "haproxy" else Ninelives(tmp, ports, reloads)
    )
    if scenario == "reload" and proxy.reload_signal is None:
        shutil.rmtree(tmp, ignore_errors=True)
        return Row(scenario, name, round_no, None, proxy.reload_note)
    backends = await start_backends(tmp, ports)
    try:
        await proxy.start()
        spec = LoadSpec(*proxy.address, connections=args.connections, rate=args.rate)
        timing = Timing(before=args.before, after=args.after, back_within=max(15.0, args.after))
        faulty = next(b for b in backends if b.name == FAULTY)
        if scenario == "reload":
            duration = args.reloads * args.reload_every

            async def fault(marks: FaultMarks) -> None:
                await reload_proxy(proxy, args.reloads, args.reload_every, marks)

            recording = await record(spec, timing, fault, duration, counters=proxy.counters)
            description = f"{args.reloads} reloads, {args.reload_every:g}s apart"
        else:
            plan = FaultPlan("kill", args.down) if scenario == "kill" else FaultPlan(
                "hang", args.hang
            )

            async def fault(marks: FaultMarks) -> None:
                await inject(plan, faulty, marks)

            recording = await record(
                spec, timing, fault, plan.duration + 5.0, server=FAULTY, counters=proxy.counters
            )
            description = plan.describe()
        report = summarize(recording, f"{proxy.address[0]}:{proxy.address[1]}", description)
        note = "" if _alive(proxy.pid) else f"{name} died during the run"
        return Row(scenario, name, round_no, report, note)
    finally:
        await proxy.stop()
        await asyncio.gather(*(b.stop() for b in backends))
        if args.keep:
            print(f"  configs and logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f} s"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} ms"


def render(rows: list[Row]) -> str:
    out = [
        "| scenario | proxy | round | requests | failed | failures by kind | resent | "
        "p50 during | p99 during | max during | stopped getting requests | back after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row.report
        if r is None:
            out.append(f"| {row.scenario} | {row.proxy} | {row.round} | {row.note} "
                       "| | | | | | | | |")
            continue
        during = r.phase("during")
        kinds = ", ".join(
            f"{kind} {n}" for p in r.phases for kind, n in p.failures.items()
        ) or "—"
        if r.server is None:
            stopped = "n/a"
        elif r.still_receiving:
            stopped = "never (still at the end)"
        else:
            stopped = _seconds(r.stopped_after)
        out.append(
            f"| {row.scenario} | {row.proxy} | {row.round} | {r.requests:,} | {r.failed} | "
            f"{kinds} | {sum(p.resent for p in r.phases)} | {_ms(during.p50_ms)} | "
            f"{_ms(during.p99_ms)} | {_ms(during.max_ms)} | {stopped} | "
            f"{_seconds(r.back_after) if r.server else 'n/a'} |"
        )
    notes = [f"{row.scenario}/{row.proxy}: {row.note}" for row in rows if row.note and row.report]
    return "\n".join(out + (["", *notes] if notes else []))


def settings(args: argparse.Namespace, reloads: bool) -> dict[str, object]:
    haproxy = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=False)
    return {
        "rate": args.rate, "connections": args.connections, "before_s": args.before,
        "after_s": args.after, "kill_down_s": args.down, "hang_s": args.hang,
        "reloads": args.reloads, "reload_every_s": args.reload_every, "rounds": args.rounds,
        "haproxy": haproxy.stdout.splitlines()[0] if haproxy.stdout else "not found",
        "ninelives_reload": reloads, "cpus": os.cpu_count(), "kernel": platform.release(),
        "python": sys.version.split()[0], "loadavg_start": round(os.getloadavg()[0], 2),
    }


async def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, object]]:
    reloads = ninelives_reloads()
    info = settings(args, reloads)
    rows: list[Row] = []
    proxies = [args.only] if args.only else list(PROXIES)
    for scenario in args.scenario or SCENARIOS:
        for round_no in range(1, args.rounds + 1):
            for name in proxies:  # alternating spreads a shared machine's noise
                print(f"{scenario} round {round_no}: {name}", file=sys.stderr)
                try:
                    rows.append(await run_one(args, scenario, name, round_no, reloads))
                except ProcessError as exc:
                    print(f"{scenario}/{name}: {exc}", file=sys.stderr)
                    rows.append(Row(scenario, name, round_no, None, "did not start (see stderr)"))
    info["loadavg_end"] = round(os.getloadavg()[0], 2)
    return rows, info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_missing({"haproxy": "haproxy"})
    import uvloop

    try:
        rows, info = uvloop.run(interruptible(run(args)))
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        return 130
    print(render(rows))
    print(f"\nload average (1 min) at start and end: {info['loadavg_start']}, "
          f"{info['loadavg_end']} on {info['cpus']} CPUs")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "settings": info,
        "results": [
            {"scenario": r.scenario, "proxy": r.proxy, "round": r.round, "note": r.note,
             "report": r.report.to_json() if r.report else None}
            for r in rows
        ],
    }, indent=2) + "\n")
    print(f"results written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
