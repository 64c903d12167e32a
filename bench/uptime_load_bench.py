#!/usr/bin/env python3
"""What recording 10,000 state transitions a second costs the data plane.

Not a test. Run: ``.venv/bin/python bench/uptime_load_bench.py`` (``--rate``, ``--rounds``,
``--phase``, ``--connections``). It starts nginx (two servers) and one ninelives node in
front of them (an HTTP listener on pool ``app``, and a pool ``flappers`` of ``--flappers``
servers that no listener uses), through ``bench/uptime_flood_node.py``: ``ninelives run``
plus a hook that publishes transitions of the flappers on the node's event log while told
to, recorded by the node's uptime store or (the store detached from the log) not.

One ``wrk -t1`` drives the listener for the whole run, while the node goes through rounds
of three phases of ``--phase`` seconds, in an order drawn at random in each round: no
transitions (off), transitions published only (publish), transitions published and
recorded (record). A phase's throughput is the node's own count of requests answered
(``GET /v1/status``) between ``--settle`` seconds after the switch and its end. Each round
gives three ratios: what recording costs (record / publish), what publishing costs
(publish / off) and both (record / off); what drifts on a shared machine over minutes
cancels out within a round. For each it prints the median of the ratios with their middle
half, the ratio of the means and the mean of the ratios with its 95% interval; then the
transitions the store committed per second (intervals, read from the database by another
connection) and the CPU time of the node's event loop thread, of its other threads (the
store's feeder) and of the store's writer process.
On a machine shared with other work the phases spread widely: take many rounds.
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


def start_node(procs: Processes, tmp: Path, cfg: Path, rate: float) -> tuple[Proc, int, int]:
    log_path = tmp / "ninelives.log"
    argv = [sys.executable, str(HERE / "uptime_flood_node.py"), str(cfg), "--rate", str(rate)]
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


# The phases of a round: no transitions; published only; published and recorded (the
# signals of bench/uptime_flood_node.py).
SIGNALS = {"off": signal.SIGUSR2, "publish": signal.SIGRTMIN + 1, "record": signal.SIGUSR1}
# What each comparison divides: (phase, by phase).
COMPARED = {"recording": ("record", "publish"), "publishing": ("publish", "off"),
            "both": ("record", "off")}


def measure(proc: Proc, admin: int, recorded: Recorded, mode: str, phase: float,
            settle: float) -> Phase:
    """Switch to ``mode`` (one of :data:`SIGNALS`), let ``settle`` seconds pass, then
    measure until ``phase`` seconds after the switch."""
    os.kill(proc.pid, SIGNALS[mode])
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


def compare(rounds: list[dict[str, Phase]], mode: str, base: str) -> dict[str, object]:
    """Throughput in ``mode`` against ``base``, round by round: the median of the ratios
    with their middle half, the ratio of the means, the mean of the ratios with its 95%
    interval (1.96 standard errors: where it would be in 95 runs of 100 if the rounds
    were independent draws)."""
    ratios = [got[mode].requests_per_s / got[base].requests_per_s for got in rounds]
    spread = (1.96 * statistics.stdev(ratios) / math.sqrt(len(ratios))
              if len(ratios) > 1 else math.inf)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    mean = statistics.fmean(ratios)
    return {
        "median": round(statistics.median(ratios), 3),
        "middle_half": [round(quartiles[0], 3), round(quartiles[2], 3)],
        "ratio_of_means": round(
            statistics.fmean(got[mode].requests_per_s for got in rounds)
            / statistics.fmean(got[base].requests_per_s for got in rounds), 3),
        "mean": round(mean, 3),
        "mean_95pct": [round(mean - spread, 3), round(mean + spread, 3)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10_000.0, help="transitions a second")
    parser.add_argument("--rounds", type=int, default=30,
                        help="rounds of three phases (off, publish, record)")
    parser.add_argument("--phase", type=float, default=4.0, help="seconds per phase")
    parser.add_argument("--settle", type=float, default=1.2,
                        help="seconds after a switch before a phase is measured (the "
                             "writer commits what was queued before a switch off, up to "
                             "the store's commit gap later)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--flappers", type=int, default=200, help="servers that flap")
    parser.add_argument("--seed", type=int, default=1, help="for the order within rounds")
    args = parser.parse_args()
    if args.phase <= args.settle:
        parser.error("--phase must be longer than --settle")
    ensure_packages()
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="ninelives-uptime-load-"))
    rounds: list[dict[str, Phase]] = []
    order = random.Random(args.seed)
    try:
        servers = (free_port(), free_port())
        start_nginx(procs, tmp, servers)
        proc, port, admin = start_node(procs, tmp, write_config(tmp, servers, args.flappers),
                                       args.rate)
        recorded = Recorded(tmp / "state" / "uptime.db")
        run_wrk(port, 1, args.connections)  # warm-up
        load_s = math.ceil(args.rounds * len(SIGNALS) * args.phase + 10)
        wrk = procs.start("wrk", ["wrk", "-t1", f"-c{args.connections}", f"-d{load_s}s",
                                  f"http://127.0.0.1:{port}/"], tmp / "wrk.log", False)
        wait_for_load(admin, wrk)
        for round_no in range(1, args.rounds + 1):
            modes = order.sample(tuple(SIGNALS), len(SIGNALS))
            got = {mode: measure(proc, admin, recorded, mode, args.phase, args.settle)
                   for mode in modes}
            rounds.append(got)
            rec = got["record"]
            print(f"round {round_no:>3} ({', '.join(modes)}): req/s "
                  + ", ".join(f"{mode} {got[mode].requests_per_s:,.0f}" for mode in SIGNALS)
                  + "; " + ", ".join(f"{name} {got[a].requests_per_s / got[b].requests_per_s:.3f}"
                                     for name, (a, b) in COMPARED.items())
                  + f"; {rec.transitions_per_s:,.0f} transitions/s committed; CPU s/s "
                  f"recording: loop {rec.loop_cpu:.2f}, other threads {rec.other_cpu:.3f}, "
                  f"writer {rec.writer_cpu:.3f}", file=sys.stderr)
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

    def mean(mode: str, key: str) -> float:
        return statistics.fmean(getattr(got[mode], key) for got in rounds)

    summary: dict[str, object] = {
        "rate_asked": args.rate,
        "rounds": args.rounds,
        "phase_s": args.phase,
        **{f"req_per_s_{mode}": round(mean(mode, "requests_per_s")) for mode in SIGNALS},
        # what recording alone costs (record against publish), what publishing alone
        # costs (publish against off), and both (record against off)
        **{name: compare(rounds, a, b) for name, (a, b) in COMPARED.items()},
        "transitions_per_s_committed": round(mean("record", "transitions_per_s")),
        **{f"loop_cpu_us_per_request_{mode}": round(
            1e6 * mean(mode, "loop_cpu") / mean(mode, "requests_per_s"), 1) for mode in SIGNALS},
        "other_threads_cpu_recording": round(mean("record", "other_cpu"), 3),
        "writer_process_cpu_recording": round(mean("record", "writer_cpu"), 3),
    }
    width = max(map(len, summary))
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
