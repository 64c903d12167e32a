"""A real etcd for tests: one member on loopback, free ports, a temporary data directory.

Started with :func:`start_etcd` inside a :class:`~tests.support.node.Harness`, which
stops it by pid when the test (or module) ends and puts its log in the report of a
failing test. Readiness is etcd's own ``/health`` answering ``true``, polled with a
deadline; no fixed sleep. The binary is Debian's ``etcd-server`` (``make test``
installs it when it is missing).

In a network namespace (``start_etcd(..., host=lab address, netns=lab.exec(host))``) etcd
listens on that namespace's address and its health is asked from inside the namespace, by
this module run as ``python -m tests.support.etcd URL`` (exit 0 when healthy).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
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
    binary = etcd_binary()
    assert binary is not None, "etcd not found: install Debian's etcd-server (make test does)"
    data_dir = harness.directory / f"{name}-data"
    client_url = f"http://{host}:{free_port()}"
    peer_url = f"http://{host}:{free_port()}"
    argv = [
        *netns, binary, "--name", name, "--data-dir", str(data_dir),
        "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"{name}={peer_url}", "--initial-cluster-state", "new",
        "--logger", "zap", "--log-outputs", "stderr",
    ]
    log_path = harness.logs / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    etcd = Etcd(label=f"etcd {name} ({client_url})", popen=popen, log_path=log_path,
                client_url=client_url)
    harness.processes.append(etcd)
    _await_health(etcd, netns)
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
