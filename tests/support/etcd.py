"""A real etcd for tests: one member on loopback, free ports, a temporary data directory;
or a cluster of members, each in a network namespace of its own (:func:`start_etcd_cluster`).

Started with :func:`start_etcd` inside a :class:`~tests.support.node.Harness`, which
stops it by pid when the test (or module) ends and puts its log in the report of a
failing test. Readiness is etcd's own ``/health`` answering ``true``, polled with a
deadline; no fixed sleep. The binary is Debian's ``etcd-server`` (``make test``
installs it when it is missing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tests.support.node import Harness, Process, free_port

ETCD_READY_TIMEOUT = 30.0

HEALTH_POLL = 0.05  # seconds between readiness probes (bounded by the deadline)


@dataclass
class Etcd(Process):
    client_url: str = ""


def etcd_binary() -> str | None:
    return shutil.which("etcd")


def start_etcd(harness: Harness, name: str = "etcd-test") -> Etcd:
    client_url = f"http://127.0.0.1:{free_port()}"
    peer_url = f"http://127.0.0.1:{free_port()}"
    etcd = _spawn(harness, name, [], client_url, peer_url, f"{name}={peer_url}", [])
    _await_health(etcd)
    return etcd


def start_etcd_cluster(
    harness: Harness, members: Mapping[str, str], wrap: Callable[[str], list[str]],
) -> list[Etcd]:
    """One etcd member per entry of ``members`` (name -> IP address, ports 2379 and 2380),
    each started under ``wrap(name)`` (``ip netns exec NS``: the test's processes may not
    reach these addresses themselves, so readiness is the member's log saying it joined).

    Raft runs with a 50 ms heartbeat and a 300 ms election timeout (etcd's defaults:
    100 ms, 1 s), so that a killed raft leader is replaced within about half a second.
    A ninelives leader whose renewal is caught in that election has a third of its lease
    to get the answer before it steps down; with a 500 ms election timeout and a 3 s lease
    it did not, in 1 of 8 runs (etcd's minimum lease is 1 s either way: 1.5 election
    timeouts, rounded up).
    """
    peers = ",".join(f"{name}=http://{address}:2380" for name, address in members.items())
    started = [
        _spawn(harness, name, wrap(name), f"http://{address}:2379", f"http://{address}:2380",
               peers, ["--heartbeat-interval", "50", "--election-timeout", "300"])
        for name, address in members.items()
    ]
    for etcd in started:
        _await_log(etcd, "published local member to cluster")
    return started


_STATUS = """
import json, sys, urllib.request
for url in sys.argv[1:]:
    request = urllib.request.Request(url + "/v3/maintenance/status", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        status = json.loads(answer.read())
    print(json.dumps([url, status["header"]["member_id"], status["leader"]]))
"""


def raft_leader(members: list[Etcd], wrap: list[str]) -> Etcd:
    """The member that leads the etcd cluster now, asked from under ``wrap`` (a namespace
    that reaches them), from every member's own status."""
    argv = [*wrap, sys.executable, "-c", _STATUS, *(m.client_url for m in members)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    statuses = [json.loads(line) for line in done.stdout.splitlines()]
    leaders = {leader for _, _, leader in statuses}
    assert len(leaders) == 1, f"the members do not agree who leads: {statuses}"
    url = next(url for url, member, _ in statuses if member in leaders)
    return next(m for m in members if m.client_url == url)


def _spawn(harness: Harness, name: str, wrap: list[str], client_url: str, peer_url: str,
           initial_cluster: str, extra: list[str]) -> Etcd:
    binary = etcd_binary()
    assert binary is not None, "etcd not found: install Debian's etcd-server (make test does)"
    data_dir = harness.directory / f"{name}-data"
    argv = [
        *wrap, binary, "--name", name, "--data-dir", str(data_dir),
        "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
        "--logger", "zap", "--log-outputs", "stderr", *extra,
    ]
    log_path = harness.logs / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    etcd = Etcd(label=f"etcd {name} ({client_url})", popen=popen, log_path=log_path,
                client_url=client_url)
    harness.processes.append(etcd)
    return etcd


def _await_log(etcd: Etcd, line: str) -> None:
    deadline = time.monotonic() + ETCD_READY_TIMEOUT
    while line not in etcd.log_path.read_text(errors="replace"):
        if not etcd.alive():
            raise AssertionError(f"{etcd.label} exited (code {etcd.popen.poll()}) before it "
                                 f"was ready\n{etcd.log_tail()}")
        if time.monotonic() > deadline:
            etcd.stop()
            raise AssertionError(f"{etcd.label} did not log {line!r} within "
                                 f"{ETCD_READY_TIMEOUT}s\n{etcd.log_tail()}")
        time.sleep(HEALTH_POLL)


def _await_health(etcd: Etcd) -> None:
    deadline = time.monotonic() + ETCD_READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if not etcd.alive():
            raise AssertionError(f"{etcd.label} exited (code {etcd.popen.poll()}) before it "
                                 f"was healthy\n{etcd.log_tail()}")
        try:
            with urllib.request.urlopen(etcd.client_url + "/health", timeout=2) as response:
                if json.loads(response.read()).get("health") == "true":
                    return
                last = "unhealthy"
        except (OSError, urllib.error.URLError, ValueError) as error:
            last = str(error)
        time.sleep(HEALTH_POLL)
    etcd.stop()
    raise AssertionError(f"{etcd.label} not healthy within {ETCD_READY_TIMEOUT}s ({last})\n"
                         f"{etcd.log_tail()}")
