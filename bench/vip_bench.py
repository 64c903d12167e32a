#!/usr/bin/env python3
"""Speed of failover of the load balancer itself: keepalived against ninelives' HA loop, in
the network namespaces of the cluster tests (tests/support/netlab.py).

Two LB nodes (lb-1, lb-2), a backend, a client and an etcd host, each in its own namespace
on one bridge; the VIP is 10.77.0.100/24 on the holder's eth0; the client asks
http://VIP:8080/ on a new connection every 10 ms (100 ms timeout, tests/support/vip_probe.py).
The systems, each over --trials trials (taken in turns, so a busy machine slows all alike):

  keepalived        keepalived 2.2, VRRP with its defaults (advert_int 1)
  keepalived-fast   the same with advert_int 0.1 (VRRP version 3)
  ninelives-local   ninelives, cluster.coordinator local, lease_ttl 1s
  ninelives-etcd    ninelives, cluster.coordinator etcd, lease_ttl 2s (a real etcd)

keepalived's nodes run a ninelives proxy without a cluster section, so only the failover
mechanism differs. Every trial starts both nodes afresh and waits for one to hold the VIP
and the other to be ready. Then, in --trials trials, node loss: every process of the holder
SIGKILLed and its link set down; measured: the time from the kill to the client's first
answer through the VIP, and the longest gap between the client's answers. In --cuts trials,
the two nodes cut off from each other at the bridge for --cut-for seconds (the client, the
backend and etcd still reach both), then healed. All along, a thread looks at both nodes'
interfaces for a VIP held twice. Run as root with the interpreter that has ninelives, by path:

    .venv/bin/python bench/vip_bench.py [--trials 5] [--cuts 2] [--only ninelives-local]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the lab and the probe are the cluster tests' own
    sys.path.insert(0, str(ROOT))

from bench_procs import Processes, install_missing  # noqa: E402
from vip_report import (  # noqa: E402
    BASELINE,
    RESTORE_TIMEOUT,
    Cut,
    Summary,
    Trial,
    render_cuts,
    render_losses,
    seconds,
    verdicts,
)
from vip_systems import KeepalivedPair, NinelivesPair, Pair  # noqa: E402

from tests.support import netlab  # noqa: E402
from tests.support.etcd import start_etcd  # noqa: E402
from tests.support.node import Harness, wait_until  # noqa: E402

SYSTEMS = ("keepalived", "keepalived-fast", "ninelives-local", "ninelives-etcd")
LOCAL_LEASE = 1.0
# etcd grants no lease under 1.5 x its election timeout (1 s by default), rounded up to
# whole seconds: 2 s is the shortest it gives with its default timing.
ETCD_LEASE = 2.0
# Issue 4's musts: service back within 1.5 s (local, 1 s lease), within lease + 0.5 s (etcd).
MUST_WITHIN = {"ninelives-local": 1.5, "ninelives-etcd": ETCD_LEASE + 0.5}
ETCD_HOST = ("etcd", 40)  # its own namespace on the bridge, 10.77.0.40
SETTLE_TIMEOUT = 20.0  # seconds for a fresh pair to have a holder and a ready peer
T = TypeVar("T")
POLL = 0.05  # seconds between looks at the holder during a cut
ANSWERS_BEFORE = 20  # answers through the VIP before the kill: the client's path is warm
ANSWERS_AFTER = 10  # answers after the first one back: the gap after it is seen too
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "vip.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5, help="trials per system")
    parser.add_argument("--only", choices=SYSTEMS, action="append",
                        help="run only these systems (repeatable)")
    parser.add_argument("--cuts", type=int, default=2,
                        help="trials per system with the nodes cut off from each other")
    parser.add_argument("--cut-for", type=float, default=5.0,
                        help="seconds the nodes stay cut off from each other")
    parser.add_argument("--fast-advert", type=float, default=0.1,
                        help="keepalived-fast's advert_int in seconds (0.01 at least)")
    parser.add_argument("--json", type=Path, default=RESULTS_PATH, help="where to write results")
    parser.add_argument("--keep", action="store_true", help="keep configs and logs")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.cuts < 0 or args.cut_for <= 0 or args.fast_advert < 0.01:
        parser.error("--trials must be at least 1, --cuts at least 0, --cut-for positive, "
                     "--fast-advert at least 0.01")
    return args


def sole_holder(lab: netlab.Lab) -> str | None:
    held = [node for node in netlab.NODES if lab.holds_vip(node)]
    return held[0] if len(held) == 1 else None


def watched(lab: netlab.Lab, trial: Callable[[], T]) -> tuple[T, netlab.SplitBrainWatch]:
    """Run ``trial`` from a fresh start, as after a reboot (no address left over, links up,
    nodes not cut off), with a watch for two holders all through it."""
    for node in netlab.NODES:
        lab.clear_vip(node)
        lab.set_link(node, "up")
    lab.isolate(*netlab.NODES, on=False)
    watch = netlab.SplitBrainWatch(lab)
    watch.start()
    try:
        return trial(), watch
    finally:
        watch.stop()


def settle(pair: Pair, lab: netlab.Lab) -> str:
    """Start both nodes; the holder, once its peer is ready to take over."""
    pair.start()
    holder = wait_until(lambda: sole_holder(lab), timeout=SETTLE_TIMEOUT,
                        message=f"{pair.name}: one node holds the VIP")
    assert holder is not None  # wait_until returns what was truthy
    wait_until(lambda: pair.settled(holder), timeout=SETTLE_TIMEOUT, interval=0.1,
               message=f"{pair.name}: {holder} leads and its peer is ready")
    return holder


def run_loss(pair: Pair, lab: netlab.Lab, harness: Harness, number: int) -> Trial:
    trial, watch = watched(lab, lambda: lose_holder(pair, lab, harness, number))
    return replace(trial, samples=watch.samples, both=len(watch.both))


def lose_holder(pair: Pair, lab: netlab.Lab, harness: Harness, number: int) -> Trial:
    probe = None
    holder = ""
    try:
        holder = settle(pair, lab)
        probe = netlab.start_probe(lab, harness)
        began = time.monotonic()
        wait_until(lambda: len(netlab.answers(probe, began, math.inf)[0]) >= ANSWERS_BEFORE,
                   timeout=SETTLE_TIMEOUT, message="the client gets answers through the VIP")
        if sole_holder(lab) != holder:
            raise AssertionError(f"{pair.name}: the VIP left {holder} before the kill")
        killed_at = time.monotonic()
        pair.kill(holder)
        lab.set_link(holder, "down")
        # An answer before this instant may still come from the node being killed.
        dead_at = time.monotonic()
        after_dead = wait_until(lambda: netlab.restored_after(probe, dead_at),
                                timeout=RESTORE_TIMEOUT,
                                message=f"the client gets answers again after {holder}'s loss")
        assert after_dead is not None
        back = dead_at + after_dead
        wait_until(lambda: len(netlab.answers(probe, back, math.inf)[0]) >= ANSWERS_AFTER,
                   timeout=SETTLE_TIMEOUT, message="the client keeps getting answers")
        times, failed = netlab.answers(probe, began, time.monotonic())
        longest = max(b - a for a, b in itertools.pairwise(times))
        return Trial(pair.name, number, holder, back - killed_at, longest, failed,
                     kill_s=dead_at - killed_at)
    except AssertionError as error:
        return Trial(pair.name, number, holder, error=str(error).splitlines()[0])
    finally:
        pair.stop()
        if probe is not None:
            probe.stop()


def run_cut(pair: Pair, lab: netlab.Lab, number: int, cut_for: float) -> Cut:
    cut, watch = watched(lab, lambda: cut_off(pair, lab, number, cut_for))
    both = watch.both
    return replace(cut, samples=watch.samples, both=len(both),
                   both_for_s=both[-1] - both[0] if both else 0.0)


def cut_off(pair: Pair, lab: netlab.Lab, number: int, cut_for: float) -> Cut:
    """The nodes cut off from each other for ``cut_for`` seconds (the client, the backend
    and etcd still reach both), then healed."""
    holder = ""
    try:
        holder = settle(pair, lab)
        kept = True
        lab.isolate(*netlab.NODES)
        try:
            until = time.monotonic() + cut_for
            while time.monotonic() < until:  # the window observed, bounded by cut_for
                kept = kept and lab.holds_vip(holder)
                time.sleep(POLL)
        finally:
            lab.isolate(*netlab.NODES, on=False)
        healed_at = time.monotonic()
        wait_until(lambda: sole_holder(lab), timeout=SETTLE_TIMEOUT,
                   message=f"{pair.name}: one holder once healed")
        return Cut(pair.name, number, holder, kept, one_holder_after_s=time.monotonic() - healed_at)
    except AssertionError as error:
        return Cut(pair.name, number, holder, error=str(error).splitlines()[0])
    finally:
        pair.stop()


def make_pairs(names: list[str], lab: netlab.Lab, harness: Harness, processes: Processes,
               directory: Path, fast_advert: float) -> list[Pair]:
    pairs: list[Pair] = []
    for name in names:
        if name.startswith("keepalived"):
            advert = 1.0 if name == BASELINE else fast_advert
            pairs.append(KeepalivedPair(name, lab, harness, processes, advert, directory))
        elif name == "ninelives-local":
            pairs.append(NinelivesPair(
                name, lab, harness, f"coordinator local, lease_ttl {LOCAL_LEASE:g}s",
                lambda run: netlab.local_coordinator(directory / f"cluster-{run}.db", LOCAL_LEASE)))
        else:
            etcd = start_etcd(harness, "etcd-vip", host=lab.address(ETCD_HOST[0]),
                              netns=lab.exec(ETCD_HOST[0]))

            def on_etcd(run: int, url: str = etcd.client_url) -> dict[str, Any]:
                return {"coordinator": "etcd", "lease_ttl": f"{ETCD_LEASE:g}s",
                        "etcd": {"endpoints": [url], "prefix": f"/vipbench/{run}"}}

            pairs.append(NinelivesPair(
                name, lab, harness, f"coordinator etcd (1 member), lease_ttl {ETCD_LEASE:g}s",
                on_etcd))
    return pairs


def machine(args: argparse.Namespace) -> dict[str, Any]:
    def first_line(*argv: str) -> str:
        if shutil.which(argv[0]) is None:
            return f"{argv[0]}: not installed"
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).splitlines()[0] if done.stdout or done.stderr else ""

    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "trials": args.trials,
        "fast_advert_s": args.fast_advert, "cpus": os.cpu_count(),
        "kernel": platform.release(), "python": sys.version.split()[0],
        "keepalived": first_line("keepalived", "--version"),
        "etcd": first_line("etcd", "--version"),
        "loadavg_start": round(os.getloadavg()[0], 2),
    }


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@dataclass
class Results:
    pairs: list[Pair] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    cuts: list[Cut] = field(default_factory=list)

    def summaries(self) -> list[Summary]:
        return [Summary(p.name, p.setting, [t for t in self.trials if t.system == p.name],
                        [c for c in self.cuts if c.system == p.name]) for p in self.pairs]


def run(args: argparse.Namespace, names: list[str], lab: netlab.Lab, harness: Harness,
        processes: Processes, directory: Path, results: Results) -> None:
    lab.build()
    netlab.start_backend(lab, harness)
    results.pairs = make_pairs(names, lab, harness, processes, directory, args.fast_advert)
    for number in range(1, args.trials + 1):
        for pair in results.pairs:  # in turns: a busy spell slows every system alike
            trial = run_loss(pair, lab, harness, number)
            print(f"loss {number} {pair.name}: holder {trial.holder}, answered again after "
                  f"{seconds(trial.restored_s)}, longest gap {seconds(trial.longest_gap_s)}, "
                  f"two holders {trial.both} of {trial.samples} {trial.error}", file=sys.stderr)
            results.trials.append(trial)
    for number in range(1, args.cuts + 1):
        for pair in results.pairs:
            cut = run_cut(pair, lab, number, args.cut_for)
            print(f"cut {number} {pair.name}: holder {cut.holder} kept it: {cut.kept}, two "
                  f"holders {cut.both} of {cut.samples} for {seconds(cut.both_for_s)} "
                  f"{cut.error}", file=sys.stderr)
            results.cuts.append(cut)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("vip_bench: needs root and iproute2 (network namespaces)", file=sys.stderr)
        return 2
    names = [name for name in SYSTEMS if not args.only or name in args.only]
    needs = {"keepalived": "keepalived"} if any(n.startswith("keepalived") for n in names) else {}
    if "ninelives-etcd" in names:
        needs["etcd"] = "etcd-server"
    install_missing(needs)
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
        signal.signal(signum, _interrupt)
    info = machine(args)
    directory = Path(tempfile.mkdtemp(prefix="ninelives-vip-bench-"))
    harness, processes = Harness(directory), Processes()
    lab = netlab.Lab({**netlab.HOSTS, ETCD_HOST[0]: ETCD_HOST[1]})
    results = Results()
    status = 0
    try:
        run(args, names, lab, harness, processes, directory, results)
    except KeyboardInterrupt:
        print("interrupted; stopping every process and removing the namespaces",
              file=sys.stderr)
        status = 130
    except AssertionError as error:  # the backend or etcd did not start
        print(f"vip_bench: {error}", file=sys.stderr)
        status = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second one may not cut this short
            signal.signal(signum, signal.SIG_IGN)
        processes.stop_all()
        harness.stop_all()
        left = lab.destroy()
        if left:
            print(f"vip_bench: could not remove namespaces {left}", file=sys.stderr)
        if args.keep:
            print(f"configs and logs kept in {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    info["loadavg_end"] = round(os.getloadavg()[0], 2)
    info["exit_status"] = status
    summaries = results.summaries()
    print(f"Node loss ({args.trials} trials each):\n\n{render_losses(summaries)}\n")
    if args.cuts:
        print(f"Nodes cut off from each other:\n\n{render_cuts(summaries, args.cut_for)}\n")
    print("\n".join(verdicts(summaries, MUST_WITHIN)))
    print(f"\n{info['date_utc']} UTC, {info['cpus']} CPUs, load average (1 min) "
          f"{info['loadavg_start']} at start, {info['loadavg_end']} at end; "
          f"{info['keepalived']}; {info['etcd']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "settings": info, "losses": [asdict(t) for t in results.trials],
        "cuts": [asdict(c) for c in results.cuts]}, indent=2) + "\n")
    print(f"results written to {args.json}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
