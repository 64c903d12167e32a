"""A real etcd for tests: one member on loopback, free ports, a temporary data directory.

Started with :func:`start_etcd` inside a :class:`~tests.support.node.Harness`, which
stops it by pid when the test (or module) ends and puts its log in the report of a
failing test. Readiness is etcd's own ``/health`` answering ``true``, polled with a
deadline; no fixed sleep. The binary is Debian's ``etcd-server`` (``make test``
installs it when it is missing).

In a network namespace (``start_etcd(..., host=lab address, netns=lab.exec(host))``) etcd
listens on that namespace's address and its health is asked from inside the namespace, by
this module run as ``python -m tests.support.etcd URL`` (exit 0 when healthy).
:func:`start_etcd_cluster` starts several members that way, one per namespace, as one
cluster; :func:`raft_leader` says which of them leads etcd's raft.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tests.support.node import ROOT, Harness, Process, free_port

ETCD_READY_TIMEOUT = 30.0

HEALTH_POLL = 0.05  # seconds between readiness probes (bounded by the deadline)


@dataclass
class Etcd(Process):
    client_url: str = ""


def etcd_binary() -> str | None:
    return shutil.which("etcd")


def start_etcd(harness: Harness, name: str = "etcd-test", *, host: str = "127.0.0.1",
               netns: Sequence[str] = ()) -> Etcd:
    """One member on ``host``; ``netns`` is a command prefix that runs it in a network
    namespace (``ip netns exec NAME``), where ``host`` is an address."""
    client_url = f"http://{host}:{free_port()}"
    peer_url = f"http://{host}:{free_port()}"
    etcd = _spawn(harness, name, netns, client_url, peer_url, f"{name}={peer_url}", [])
    _await_health(etcd, netns)
    return etcd


def start_etcd_cluster(
    harness: Harness, members: Mapping[str, str], netns: Callable[[str], Sequence[str]],
) -> list[Etcd]:
    """One etcd member per entry of ``members`` (name -> IP address, ports 2379 and 2380),
    each run under ``netns(name)``, as one cluster; returned once every member is healthy.

    Raft runs with a 50 ms heartbeat and a 300 ms election timeout (etcd's defaults:
    100 ms, 1 s), so that a killed raft leader is replaced within about half a second.
    A ninelives leader whose renewal is caught in that election has a third of its lease
    to get the answer before it steps down; with a 500 ms election timeout and a 3 s lease
    it did not, in 1 of 8 runs (etcd's minimum lease is 1 s either way: 1.5 election
    timeouts, rounded up).
    """
    peers = ",".join(f"{name}=http://{address}:2380" for name, address in members.items())
    started = [
        _spawn(harness, name, netns(name), f"http://{address}:2379", f"http://{address}:2380",
               peers, ["--heartbeat-interval", "50", "--election-timeout", "300"])
        for name, address in members.items()
    ]
    # Healthy needs a quorum: every member is started before the first is asked.
    for name, etcd in zip(members, started, strict=True):
        _await_health(etcd, netns(name))
    return started


_STATUS = """
import json, sys, urllib.request
for url in sys.argv[1:]:
    request = urllib.request.Request(url + "/v3/maintenance/status", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        status = json.loads(answer.read())
    print(json.dumps([url, status["header"]["member_id"], status["leader"]]))
"""


def raft_leader(members: list[Etcd], netns: Sequence[str]) -> Etcd:
    """The member that leads the etcd cluster now, from every member's own status, asked
    from under ``netns`` (a namespace that reaches them)."""
    argv = [*netns, sys.executable, "-c", _STATUS, *(m.client_url for m in members)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    statuses = [json.loads(line) for line in done.stdout.splitlines()]
    leaders = {leader for _, _, leader in statuses}
    assert len(leaders) == 1, f"the members do not agree who leads: {statuses}"
    url = next(url for url, member, _ in statuses if member in leaders)
    return next(m for m in members if m.client_url == url)


def _spawn(harness: Harness, name: str, netns: Sequence[str], client_url: str, peer_url: str,
           initial_cluster: str, extra: list[str]) -> Etcd:
    binary = etcd_binary()
    assert binary is not None, "etcd not found: install Debian's etcd-server (make test does)"
    data_dir = harness.directory / f"{name}-data"
    argv = [
        *netns, binary, "--name", name, "--data-dir", str(data_dir),
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


def health(client_url: str) -> str:
    """'' when etcd at ``client_url`` says it is healthy, else what is wrong."""
    try:
        with urllib.request.urlopen(client_url + "/health", timeout=2) as response:
            return "" if json.loads(response.read()).get("health") == "true" else "unhealthy"
    except (OSError, urllib.error.URLError, ValueError) as error:
        return str(error)


def _health_from(client_url: str, netns: Sequence[str]) -> str:
    if not netns:
        return health(client_url)
    done = subprocess.run([*netns, sys.executable, "-m", "tests.support.etcd", client_url],
                          cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
    return "" if done.returncode == 0 else done.stdout.strip() or done.stderr.strip()


def _await_health(etcd: Etcd, netns: Sequence[str]) -> None:
    deadline = time.monotonic() + ETCD_READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if not etcd.alive():
            raise AssertionError(f"{etcd.label} exited (code {etcd.popen.poll()}) before it "
                                 f"was healthy\n{etcd.log_tail()}")
        last = _health_from(etcd.client_url, netns)
        if not last:
            return
        time.sleep(HEALTH_POLL)
    etcd.stop()
    raise AssertionError(f"{etcd.label} not healthy within {ETCD_READY_TIMEOUT}s ({last})\n"
                         f"{etcd.log_tail()}")


if __name__ == "__main__":
    problem = health(sys.argv[1])
    print(problem or "healthy")
    sys.exit(1 if problem else 0)
