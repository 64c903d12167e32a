"""A network lab for cluster tests and benchmarks: namespaces on one bridge, veth pairs,
a thread that watches for two holders of the virtual IP, and the reading of a VIP probe's log.

Topology: a bridge namespace (br0) and one namespace per host, each with an ``eth0`` on
``SUBNET`` (10.77.0.0/24) whose last octet is given by ``HOSTS`` (or the hosts a lab is made
with). Names carry a random tag, so that several runs (tests, benchmarks) can build labs at
the same time. Also here: the ninelives nodes, the backend and the client of the cluster
tests and of bench/vip_bench.py.

A test reaches into a namespace without a process per call through :class:`InNamespace`:
a thread that entered the namespace (setns applies to the calling thread only), so the
sockets the test opens there are that host's.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest

from tests.support.node import NINELIVES, TOKEN, Harness, Process, wait_until

P = ParamSpec("P")
T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NS_CALL_TIMEOUT = 60.0  # seconds one call in a namespace may take at most

VIP = "10.77.0.100"
SUBNET = "10.77.0.{}/24"
HOSTS = {"lb-1": 11, "lb-2": 12, "backend": 20, "client": 30}
NODES = ("lb-1", "lb-2")
BACKEND_PORT = 8000
WEB_PORT = 8080
NOWHERE_MAC = "02:00:00:00:00:99"  # locally administered, on no interface of a lab
MIN_SAMPLES = 100  # a split-brain watch that saw fewer could have missed an overlap

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (network namespaces, veth pairs, a bridge)",
)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=10)


class Lab:
    """The namespaces, the bridge and the veth pairs of one test."""

    def __init__(self, hosts: Mapping[str, int] = HOSTS) -> None:
        self.tag = secrets.token_hex(2)  # names unique to this run: others may test too
        self.hosts = dict(hosts)  # host -> last octet of its address
        self.namespaces: list[str] = []

    def ns(self, host: str) -> str:
        return f"nl{self.tag}-{host}"

    def build(self) -> None:
        bridge = self._add_namespace("br")
        ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", bridge, "link", "set", "br0", "up")
        for host, last in self.hosts.items():
            ns = self._add_namespace(host)
            port = f"v-{host}"
            ip("-n", bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("-n", bridge, "link", "set", port, "master", "br0")
            ip("-n", bridge, "link", "set", port, "up")
            ip("-n", ns, "addr", "add", SUBNET.format(last), "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    def _add_namespace(self, host: str) -> str:
        name = self.ns(host)
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def destroy(self) -> list[str]:
        """Remove every namespace (their veth ends go with them); the ones that failed."""
        failed = []
        for name in reversed(self.namespaces):
            if ip("netns", "del", name, check=False).returncode != 0:
                failed.append(name)
        self.namespaces.clear()
        return failed

    def holds_vip(self, host: str) -> bool:
        """The VIP is on this node's eth0 and the link is up (a down link answers nobody)."""
        out = ip("-n", self.ns(host), "-o", "-4", "addr", "show", "dev", "eth0", "up",
                 check=False).stdout
        return f" {VIP}/" in out

    def has_vip_address(self, host: str) -> bool:
        """The VIP is on this node's eth0, whether the link is up or down."""
        out = ip("-n", self.ns(host), "-o", "-4", "addr", "show", "dev", "eth0",
                 check=False).stdout
        return f" {VIP}/" in out

    def address(self, host: str) -> str:
        return SUBNET.format(self.hosts[host]).split("/")[0]

    def clear_vip(self, host: str) -> None:
        """Remove the VIP from this node's eth0 if it is there, as a reboot would."""
        ip("-n", self.ns(host), "addr", "del", f"{VIP}/24", "dev", "eth0", check=False)

    def set_link(self, host: str, state: str) -> None:
        ip("-n", self.ns(host), "link", "set", "eth0", state)

    def isolate(self, *hosts: str, on: bool = True) -> None:
        """Cut (``on``) or heal the traffic between these hosts at the bridge (isolated
        bridge ports); each still reaches every other host."""
        for host in hosts:
            ip("-n", self.ns("br"), "link", "set", f"v-{host}", "type", "bridge_slave",
               "isolated", "on" if on else "off")

    def exec(self, host: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def add_address(self, host: str, last: int) -> str:
        """One more address on ``host``'s eth0 (10.77.0.LAST); returns it."""
        address = SUBNET.format(last).partition("/")[0]
        ip("-n", self.ns(host), "addr", "add", SUBNET.format(last), "dev", "eth0")
        return address

    def blackhole(self, host: str, address: str, on: bool = True) -> None:
        """Make ``host`` lose (or find again) its path to ``address``: a blackhole route."""
        ip("-n", self.ns(host), "route", "add" if on else "del", "blackhole", f"{address}/32")

    def cut_off(self, host: str, *others: str) -> None:
        """Silently drop everything ``host`` sends to ``others``, its link still up: their
        addresses are pinned to a MAC address nobody has, so packets leave and are lost, as
        over a cut cable (no iptables needed; nothing answers, so TCP times out). Unlike
        :meth:`isolate`, ``host`` still reaches (and answers ARP from) everyone else."""
        for other_host in others:
            ip("-n", self.ns(host), "neigh", "replace", self.address(other_host), "lladdr",
               NOWHERE_MAC, "dev", "eth0", "nud", "permanent")

    def reconnect(self, host: str, *others: str) -> None:
        """Undo :meth:`cut_off`: ``host`` asks ARP for ``others`` again."""
        for other_host in others:
            ip("-n", self.ns(host), "neigh", "del", self.address(other_host), "dev", "eth0")


@contextmanager
def built_lab(hosts: Mapping[str, int] = HOSTS) -> Iterator[Lab]:
    """A lab built for the time of a ``with``, removed also on failure."""
    made = Lab(hosts)
    try:
        made.build()
        yield made
    finally:
        left = made.destroy()
        assert not left, f"could not remove namespaces {left}"


class InNamespace:
    """Runs calls in a thread that entered ``host``'s namespace; ``close()`` ends it."""

    def __init__(self, lab: Lab, host: str) -> None:
        self.path = f"/run/netns/{lab.ns(host)}"
        self._pool = ThreadPoolExecutor(max_workers=1, initializer=self._enter)

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.path} failed")
        finally:
            os.close(fd)

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return self._pool.submit(fn, *args, **kwargs).result(NS_CALL_TIMEOUT)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass
class SplitBrainWatch:
    """Looks at both nodes' interfaces in a thread until stopped; counts samples and
    every sample in which both held the VIP."""

    lab: Lab
    samples: int = 0
    both: list[float] = field(default_factory=list)
    holders: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    last: float = 0.0  # when the latest sample was taken
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            at = time.monotonic()
            held = tuple(h for h in NODES if self.lab.holds_vip(h))
            self.samples += 1
            self.last = at
            if not self.holders or self.holders[-1][1] != held:
                self.holders.append((at, held))
            if len(held) > 1:
                self.both.append(at)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def assert_never_two(self) -> None:
        """No sample saw both nodes hold the VIP, and there were enough samples to tell."""
        assert not self.both, f"both nodes held the VIP at {self.both} ({self.holders})"
        assert self.samples > MIN_SAMPLES, self.samples

    def overlap(self) -> float:
        """Seconds during which both nodes held the VIP, as far as the samples tell."""
        ends = [at for at, _ in self.holders[1:]] + [self.last]
        return sum(end - at for (at, held), end in zip(self.holders, ends, strict=True)
                   if len(held) > 1)


def other(node: str) -> str:
    return NODES[1] if node == NODES[0] else NODES[0]


def node_config(harness: Harness, name: str, cluster: Mapping[str, Any] | None) -> Path:
    """A node of the lab: listener ``web`` on port 8080 of every address, in front of the
    backend. With ``cluster`` (the coordinator's settings and ``lease_ttl``), active/passive
    with the VIP on eth0; without, a plain proxy (for a failover that is not ninelives')."""
    config: dict[str, Any] = {
        "node": {"name": name, "state_dir": str(harness.directory / f"state-{name}")},
        "admin": {"listen": "127.0.0.1:0", "token": TOKEN},
        "listeners": [{"name": "web", "bind": f"0.0.0.0:{WEB_PORT}", "protocol": "http",
                       "pool": "app"}],
        "pools": {"app": {
            "health": {"tcp": {}, "interval": "200ms", "timeout": "200ms", "rise": 1,
                       "fall": 2},
            "servers": [{"name": "b1", "address": f"10.77.0.{HOSTS['backend']}:{BACKEND_PORT}"}],
        }},
    }
    if cluster is not None:
        config["cluster"] = {**cluster, "vip": {"address": f"{VIP}/24", "interface": "eth0"}}
    return harness.write_config(config, name)


def local_coordinator(path: Path, lease_ttl: float) -> dict[str, Any]:
    return {"coordinator": "local", "local": {"path": str(path)}, "lease_ttl": f"{lease_ttl:g}s"}


class Cluster:
    """ninelives nodes in the lab's node namespaces, all with the same ``cluster`` settings."""

    def __init__(self, lab: Lab, harness: Harness, cluster: Mapping[str, Any] | None) -> None:
        self.lab = lab
        self.harness = harness
        self.cluster = cluster
        self.nodes: dict[str, Process] = {}
        self.admin: dict[str, str] = {}

    def start(self, name: str, **extra: Any) -> Process:
        """Start node ``name``; ``extra`` adds to its cluster settings (priority=200)."""
        cluster = None if self.cluster is None else {**self.cluster, **extra}
        config = node_config(self.harness, name, cluster)
        argv = self.lab.exec(name, str(NINELIVES), "run", str(config))
        process = self.harness.spawn(f"node-{name}", argv, "ninelives ready")
        fields = dict(w.split("=", 1) for w in process.ready_line.split()[2:])
        self.nodes[name], self.admin[name] = process, fields["admin"]
        return process

    def start_all(self) -> str:
        """Start every node; return the one that holds the VIP."""
        for name in NODES:
            self.start(name)
        return wait_until(self.holder, timeout=15, message="one node holds the VIP")

    def ninelives(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``ninelives ARGS`` against node ``name``'s admin API, run in its namespace."""
        argv = self.lab.exec(name, str(NINELIVES), *args, "--admin", self.admin[name],
                             "--token", TOKEN)
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    def status(self, name: str) -> dict[str, Any]:
        done = self.ninelives(name, "status", "--json")
        done.check_returncode()
        cluster: dict[str, Any] = json.loads(done.stdout)["cluster"]
        return cluster

    def holder(self) -> str | None:
        held = [h for h in NODES if self.lab.holds_vip(h)]
        assert len(held) <= 1, f"both nodes hold the VIP: {held}"
        return held[0] if held else None

    def rejoins_as_follower(self, old: str, leader: str, hold: float) -> None:
        """``old`` (running again) follows ``leader``, which keeps the VIP ``hold`` seconds."""
        def follows() -> bool:  # its member list may lag behind its role for a moment
            status = self.status(old)
            return status["role"] == "follower" and (status["leader"] or {}).get("name") == leader

        wait_until(follows, timeout=10, message=f"{old} follows {leader}")
        held_until = time.monotonic() + hold
        while time.monotonic() < held_until:
            assert self.holder() == leader, f"the VIP left {leader}"


def start_backend(lab: Lab, harness: Harness) -> Process:
    argv = lab.exec("backend", sys.executable, "-m", "tests.support.backend", "--name", "b1",
                    "--host", "0.0.0.0", "--port", str(BACKEND_PORT))
    return harness.spawn("backend-b1", argv, "backend ready")


def start_probe(lab: Lab, harness: Harness, *options: str) -> Process:
    """The client asking the VIP again and again (tests/support/vip_probe.py, with
    ``options``)."""
    argv = lab.exec("client", sys.executable, "-m", "tests.support.vip_probe", "--host", VIP,
                    "--port", str(WEB_PORT), *options)
    return harness.spawn("probe", argv, "probe ready")


def wait_for_answers(probe: Process) -> None:
    """Wait until the probe has had an answer through the VIP."""
    wait_until(lambda: restored_after(probe, 0.0) is not None, timeout=10,
               message="the client gets answers through the VIP")


def outcomes(probe: Process) -> Iterator[tuple[float, str]]:
    """Each attempt of the probe: when it ended (monotonic seconds) and what it got."""
    for line in "".join(probe.extra_stdout).splitlines():
        at, _, outcome = line.partition(" ")
        try:
            when = float(at)
        except ValueError:
            continue  # the readiness line's leftovers, a partial line
        yield when, outcome


def attempts(probe: Process) -> Iterator[tuple[float, bool]]:
    """Every attempt the probe logged so far: when, and whether it got an answer."""
    return ((when, outcome.startswith("ok")) for when, outcome in outcomes(probe))


def restored_after(probe: Process, since: float) -> float | None:
    """Seconds from ``since`` to the first answer the probe got after it."""
    return next((when - since for when, ok in attempts(probe) if when > since and ok), None)


def answers(probe: Process, start: float, end: float) -> tuple[list[float], int]:
    """The times of the answers the probe got within [start, end], and its failed attempts."""
    within = [(when, ok) for when, ok in attempts(probe) if start <= when <= end]
    return [when for when, ok in within if ok], sum(1 for _, ok in within if not ok)
