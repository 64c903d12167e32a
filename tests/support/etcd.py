"""A real etcd for tests: one member on loopback, free ports, a temporary data directory.

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
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tests.support.node import Harness, Process, free_port

ETCD_READY_TIMEOUT = 30.0

HEALTH_POLL = 0.05  # seconds between readiness probes (bounded by the deadline)


@dataclass
class Etcd(Process):
    client_url: str = ""


def etcd_binary() -> str | None:
    return shutil.which("etcd")


def _direct(probe: Callable[[], str]) -> str:
    return probe()


def start_etcd(
    harness: Harness, name: str = "etcd-test", host: str = "127.0.0.1",
    wrap: Sequence[str] = (), run_in: Callable[[Callable[[], str]], str] = _direct,
) -> Etcd:
    """Start etcd listening on ``host``; ``wrap`` prefixes its command line and ``run_in``
    runs the readiness probe (both for an etcd inside a network namespace)."""
    binary = etcd_binary()
    assert binary is not None, "etcd not found: install Debian's etcd-server (make test does)"
    data_dir = harness.directory / f"{name}-data"
    client_url = f"http://{host}:{free_port()}"
    peer_url = f"http://{host}:{free_port()}"
    argv = [
        *wrap, binary, "--name", name, "--data-dir", str(data_dir),
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
    _await_health(etcd, run_in)
    return etcd


def _health(url: str) -> str:
    """Empty when etcd at ``url`` says it is healthy, else what it said or what failed."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return "" if json.loads(response.read()).get("health") == "true" else "unhealthy"
    except (OSError, urllib.error.URLError, ValueError) as error:
        return str(error)


def _await_health(etcd: Etcd, run_in: Callable[[Callable[[], str]], str]) -> None:
    deadline = time.monotonic() + ETCD_READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if not etcd.alive():
            raise AssertionError(f"{etcd.label} exited (code {etcd.popen.poll()}) before it "
                                 f"was healthy\n{etcd.log_tail()}")
        last = run_in(lambda: _health(etcd.client_url))
        if not last:
            return
        time.sleep(HEALTH_POLL)
    etcd.stop()
    raise AssertionError(f"{etcd.label} not healthy within {ETCD_READY_TIMEOUT}s ({last})\n"
                         f"{etcd.log_tail()}")
