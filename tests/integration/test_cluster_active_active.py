"""Active/active in network namespaces: what one node is told, every node does, and hash
persistence gives the same server through every node.

Topology (every namespace made here is removed at the end, also on failure):

    bridge namespace (br0) --- lb-1 (10.77.0.11)   ninelives run: web :8080 (roundrobin),
                           --- lb-2 (10.77.0.12)   keyed :8081 (hash on X-User)
                           --- backend (10.77.0.21, .22, .23 :8000: b1, b2, b3)
                           --- client (10.77.0.30)

The nodes run in ``active-active`` mode on the ``local`` coordinator (one SQLite file), then
on ``etcd`` (one member, in the backend's namespace on 10.77.0.20, so that both nodes
reach it over the bridge). The test reaches each namespace through a thread that entered
it (netlab.InNamespace): admin calls to a node from its own namespace, traffic from the
client's.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.etcd import etcd_binary, start_etcd
from tests.support.netlab import HOSTS, InNamespace, Lab
from tests.support.node import (
    NINELIVES,
    TOKEN,
    Addr,
    Harness,
    HttpClient,
    Process,
    count_backends,
    http_request,
    parse_ready_line,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (network namespaces, veth pairs, a bridge)",
)

LEASE_TTL = {"local": "1s", "etcd": "2s"}  # etcd's shortest with its default settings
BACKENDS = {"b1": 21, "b2": 22, "b3": 23}  # last octet of each backend's own address
NODES = ("lb-1", "lb-2")
KEYS = [f"user-{i}" for i in range(200)]
PROPAGATION_LIMIT = 2.0  # seconds; measured well under it (printed), slack for a busy machine
POLL = 0.005  # seconds between reads of the other node's status while timing propagation


@pytest.fixture(params=["local", "etcd"])
def coordinator(request: pytest.FixtureRequest, lab: Lab, harness: Harness) -> dict[str, Any]:
    """The cluster section's coordinator settings; starts etcd for ``etcd``."""
    if request.param == "local":
        return {"coordinator": "local", "local": {"path": str(harness.directory / "cluster.db")}}
    if etcd_binary() is None:
        pytest.skip("etcd not installed (Debian's etcd-server)")
    etcd = start_etcd(harness, "etcd-aa", host=lab.address("backend"),
                      netns=lab.exec("backend"))
    return {"coordinator": "etcd",
            "etcd": {"endpoints": [etcd.client_url], "prefix": f"/ninelives-{lab.tag}"}}


def node_config(
    harness: Harness, name: str, coordinator: dict[str, Any], b4: bool = True
) -> Path:
    """``b4`` (b3's backend under another name, in pool app only): lb-2 starts without it."""
    health = {"tcp": {}, "interval": "200ms", "timeout": "200ms", "rise": 1, "fall": 2}
    servers = [{"name": b, "address": f"10.77.0.{last}:8000"} for b, last in BACKENDS.items()]
    extra = [{"name": "b4", "address": f"10.77.0.{BACKENDS['b3']}:8000"}] if b4 else []
    return harness.write_config({
        "node": {"name": name, "state_dir": str(harness.directory / f"state-{name}")},
        "admin": {"listen": "127.0.0.1:0", "token": TOKEN},
        "listeners": [
            {"name": "web", "bind": "0.0.0.0:8080", "protocol": "http", "pool": "app"},
            {"name": "keyed", "bind": "0.0.0.0:8081", "protocol": "http", "pool": "keyed"},
        ],
        "pools": {
            "app": {"health": health, "slow_start": "0s", "servers": servers + extra},
            "keyed": {"health": health, "balance": "hash", "hash_on": "header:X-User",
                      "servers": servers},
        },
        "cluster": {**coordinator, "lease_ttl": LEASE_TTL[coordinator["coordinator"]],
                    "mode": "active-active"},
    }, name)


class Nodes:
    """The two nodes, each with a thread in its namespace for admin calls."""

    def __init__(self, lab: Lab, harness: Harness, coordinator: dict[str, Any]) -> None:
        self.lab = lab
        self.harness = harness
        self.coordinator = coordinator
        self.processes: dict[str, Process] = {}
        self.admin: dict[str, Addr] = {}
        self.threads = {name: InNamespace(lab, name) for name in NODES}
        self.took = 0.0

    def start(self, name: str, b4: bool = True) -> None:
        argv = self.lab.exec(name, str(NINELIVES), "run",
                             str(node_config(self.harness, name, self.coordinator, b4)))
        process = self.harness.spawn(f"node-{name}", argv, "ninelives ready")
        self.processes[name] = process
        self.admin[name] = parse_ready_line(process.ready_line)[1]

    def call(self, name: str, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        response = self.threads[name].call(http_request, self.admin[name], method, path,
                                           headers, data)
        assert response.status == 200, response
        return response.json()

    def server(self, name: str, pool: str, server: str) -> dict[str, Any]:
        for p in self.call(name, "GET", "/v1/status")["pools"]:
            for tier in p["tiers"]:
                for s in tier["servers"]:
                    if p["name"] == pool and s["name"] == server:
                        found: dict[str, Any] = s
                        return found
        raise AssertionError(f"{name}: no server {pool}/{server}")

    def pool(self, name: str, pool: str) -> dict[str, Any]:
        pools = self.call(name, "GET", "/v1/status")["pools"]
        found: dict[str, Any] = next(p for p in pools if p["name"] == pool)
        return found

    def change(self, name: str, server: str, what: str, value: Any) -> dict[str, Any]:
        """Ask ``name`` for a change; ``took`` is how long the node took to answer."""
        started = time.monotonic()
        result: dict[str, Any] = self.call(
            name, "POST", f"/v1/pools/app/servers/{server}/{what}", {what: value})
        self.took = time.monotonic() - started
        return result

    def settled(self, name: str) -> bool:
        """Both nodes in the member list, every server of ``keyed`` up, none excluded."""
        status = self.call(name, "GET", "/v1/status")
        keyed = next(p for p in status["pools"] if p["name"] == "keyed")
        servers = [s for tier in keyed["tiers"] for s in tier["servers"]]
        return (len(status["cluster"]["members"]) == 2 and not keyed["hash_excluded"]
                and all(s["state"] == "up" for s in servers))

    def event(self, name: str, entity: str, new: str) -> dict[str, Any] | None:
        events = self.call(name, "GET", "/v1/events")["events"]
        return next((e for e in reversed(events) if e["entity"] == entity and e["new"] == new),
                    None)

    def close(self) -> None:
        for thread in self.threads.values():
            thread.close()


def timed(started: float, predicate: Callable[[], object], what: str) -> float:
    """Seconds from ``started`` until ``predicate`` holds, read every POLL; fails after a
    deadline."""
    wait_until(predicate, timeout=10, interval=POLL, message=what)
    return time.monotonic() - started


def placement(addr: Addr) -> dict[str, str]:
    """The server that answers each key through ``addr`` (one keep-alive connection)."""
    out = {}
    with HttpClient(addr) as client:
        for key in KEYS:
            response = client.request("GET", "/", {"X-User": key})
            assert response.status == 200, response
            out[key] = response.header("X-Backend") or "?"
    return out


def test_changes_on_one_node_apply_on_every_node_and_hashing_agrees(
    lab: Lab, harness: Harness, coordinator: dict[str, Any],
) -> None:
    for backend, last in BACKENDS.items():
        address = lab.add_address("backend", last)
        harness.spawn(f"backend-{backend}", lab.exec(
            "backend", sys.executable, "-m", "tests.support.backend", "--name", backend,
            "--host", address, "--port", "8000"), "backend ready")
    nodes = Nodes(lab, harness, coordinator)
    client = InNamespace(lab, "client")
    web = {name: (f"10.77.0.{HOSTS[name]}", 8080) for name in NODES}
    keyed = {name: (f"10.77.0.{HOSTS[name]}", 8081) for name in NODES}
    timings: dict[str, float] = {}
    answered: dict[str, float] = {}  # of those, how long the node asked took to answer
    try:
        nodes.start("lb-1")
        nodes.start("lb-2", b4=False)
        for name in NODES:
            wait_until(lambda n=name: nodes.settled(n), message=f"{name}: both nodes seen, "
                       "every keyed server up, none kept out of hashing")

        # A change for a server lb-2 does not have is ignored there, until a reload adds it.
        nodes.change("lb-1", "b4", "state", "drain")

        # drain on lb-1: lb-2 shows it, says where it came from, sends b1 nothing new.
        asked = time.monotonic()
        answer = nodes.change("lb-1", "b1", "state", "drain")
        assert answer["state"] == "drain" and answer["shared"] is True, answer
        timings["drain"] = timed(asked, lambda: nodes.server("lb-2", "app", "b1")["state"]
                                 == "drain", "lb-2 applies the drain made on lb-1")
        answered["drain"] = nodes.took
        event = nodes.event("lb-2", "app/b1", "drain")
        assert event is not None and event["reason"] == "drain on lb-1", event
        assert "b1" not in client.call(count_backends, web["lb-2"], 30)

        # weight on lb-2: lb-1 balances by it (b1 drained: b2 3 to b3 1).
        asked = time.monotonic()
        nodes.change("lb-2", "b2", "weight", 3)
        timings["weight"] = timed(asked, lambda: nodes.server("lb-1", "app", "b2")["weight"] == 3,
                                  "lb-1 applies the weight set on lb-2")
        answered["weight"] = nodes.took
        assert client.call(count_backends, web["lb-1"], 40) == Counter({"b2": 30, "b3": 10})

        # maint on lb-1: lb-2 sends b3 nothing at all.
        asked = time.monotonic()
        nodes.change("lb-1", "b3", "state", "maint")
        timings["maint"] = timed(asked, lambda: nodes.server("lb-2", "app", "b3")["state"]
                                 == "maint", "lb-2 applies the maint made on lb-1")
        answered["maint"] = nodes.took
        assert client.call(count_backends, web["lb-2"], 20) == Counter({"b2": 20})

        # lb-2 restarts and takes the shared state, including a change made while it was
        # down (its own state file still says b1 drain).
        nodes.processes["lb-2"].stop()
        nodes.change("lb-1", "b1", "state", "ready")
        nodes.start("lb-2", b4=False)
        assert "b4" not in {s["name"] for s in nodes.pool("lb-2", "app")["tiers"][0]["servers"]}
        b1, b2, b3 = (nodes.server("lb-2", "app", b) for b in ("b1", "b2", "b3"))
        assert (b1["admin_state"], b2["weight"], b3["admin_state"]) == ("ready", 3, "maint"), (
            b1, b2, b3)

        node_config(harness, "lb-2", coordinator, b4=True)
        assert nodes.call("lb-2", "POST", "/v1/reload")["reloaded"] is True
        assert nodes.server("lb-2", "app", "b4")["state"] == "drain"
        added = nodes.event("lb-2", "app/b4", "drain")
        assert added is not None and added["reason"] == "drain on lb-1", added

        # Hash persistence: the same server for every key through either node...
        for name in NODES:
            wait_until(lambda n=name: nodes.settled(n), message=f"{name}: both nodes seen, "
                       "every keyed server up, none kept out of hashing")
        before = client.call(placement, keyed["lb-1"])
        assert client.call(placement, keyed["lb-2"]) == before
        assert set(before.values()) == set(BACKENDS)
        # ... also when only lb-2 loses its path to b2: lb-1 takes b2 out of its table too.
        lab.blackhole("lb-2", f"10.77.0.{BACKENDS['b2']}")
        cut_at = time.monotonic()
        wait_until(lambda: nodes.server("lb-2", "keyed", "b2")["state"] == "down",
                   message="lb-2 sees b2 down")
        seen_down = time.monotonic() - cut_at
        wait_until(lambda: nodes.pool("lb-1", "keyed")["hash_excluded"] == ["b2"],
                   timeout=10, interval=POLL, message="lb-1 keeps b2 out of its hash table")
        went_down = nodes.event("lb-2", "keyed/b2", "down")
        assert went_down is not None
        timings["health view"] = time.time() - went_down["time"]
        assert nodes.server("lb-1", "keyed", "b2")["state"] == "up"  # lb-1 still reaches it
        during = client.call(placement, keyed["lb-1"])
        assert client.call(placement, keyed["lb-2"]) == during
        assert "b2" not in during.values()
        assert all(during[k] == before[k] for k in KEYS if before[k] != "b2")  # only b2's moved
        lab.blackhole("lb-2", f"10.77.0.{BACKENDS['b2']}", on=False)
        wait_until(lambda: nodes.pool("lb-1", "keyed")["hash_excluded"] == [],
                   message="b2 back in lb-1's hash table once lb-2 reaches it again")
        wait_until(lambda: nodes.server("lb-2", "keyed", "b2")["state"] == "up",
                   message="lb-2 sees b2 up again")
        assert client.call(placement, keyed["lb-1"]) == before
        assert client.call(placement, keyed["lb-2"]) == before
    finally:
        client.close()
        nodes.close()
    said = ", ".join(f"{k} {v * 1000:.0f} ms" + (
        f" (answered in {answered[k] * 1000:.0f})" if k in answered else "")
        for k, v in timings.items())
    print(f"\n[{coordinator['coordinator']}] active-active propagation (change asked of one "
          f"node -> seen in the other's status; health view: b2 down on lb-2 -> out of "
          f"lb-1's hash table): {said}; "
          f"lb-2 saw b2 down {seen_down * 1000:.0f} ms after the cut")
    assert max(timings.values()) < PROPAGATION_LIMIT, timings
