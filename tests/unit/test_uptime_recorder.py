"""The node's side of the uptime store: counters sampled as deltas, renames, retirement."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ninelives.config import parse_config
from ninelives.uptime.recorder import UptimeRecorder, counters, topology
from ninelives.uptime.store import UptimeStore


@dataclass
class FakeServer:
    name: str
    provider: str
    responses: list[int] = field(default_factory=lambda: [0] * 6)


@dataclass
class FakePool:
    name: str
    servers: list[FakeServer]
    no_server: int = 0


@dataclass
class FakeListener:
    name: str
    pool_name: str
    responses: list[int] = field(default_factory=lambda: [0] * 6)


@dataclass
class FakeNode:
    name: str
    pools: dict[str, Any]
    listeners: list[Any]
    config: Any = field(default_factory=lambda: parse_config(
        "listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]\n"
        "pools: {app: {servers: [{name: a1, address: 127.0.0.1:9001}]}}\n"))


def make_node() -> FakeNode:
    pool = FakePool("app", [FakeServer("a1", "cloud-a"), FakeServer("a2", "cloud-a"),
                            FakeServer("b1", "cloud-b")])
    return FakeNode("lb-1", {"app": pool}, [FakeListener("web", "app")])


def test_counters_add_up_servers_into_pools_and_providers() -> None:
    node = make_node()
    a1, a2, b1 = node.pools["app"].servers
    a1.responses[2], a2.responses[5], b1.responses[0] = 10, 2, 1
    node.pools["app"].no_server = 3
    node.listeners[0].responses[2] = 9
    got = counters(node)  # type: ignore[arg-type]
    assert got["pool", "app"] == (1, 0, 10, 0, 0, 5)
    assert got["provider", "app/cloud-a"] == (0, 0, 10, 0, 0, 2)
    assert got["provider", "app/cloud-b"] == (1, 0, 0, 0, 0, 0)
    assert got["listener", "web"] == (0, 0, 9, 0, 0, 0)
    assert topology(node).keys() >= {("node", "lb-1"), ("server", "app/b1"),  # type: ignore[arg-type]
                                     ("provider", "app/cloud-b"), ("listener", "web")}


def test_samples_are_deltas_and_a_counter_that_went_down_is_new(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path / "uptime.db", clock=lambda: 1_750_000_000.0)
    store.open("lb-1")
    recorder = UptimeRecorder(store)
    recorder.clock = lambda: 1_750_000_000.0
    node = make_node()
    web = node.listeners[0]
    web.responses[2] = 5
    recorder.sample(node)  # type: ignore[arg-type]
    web.responses[2] = 8
    recorder.sample(node)  # type: ignore[arg-type]
    recorder.sample(node)  # nothing new: nothing queued  # type: ignore[arg-type]
    web.responses[2] = 2  # a new listener object after a reload: its count is all new
    recorder.sample(node)  # type: ignore[arg-type]
    assert store.flush()
    now = 1_750_000_000.0
    assert store.requests(now - 60, now + 60, now)["listener", "web"] == (0, 0, 10, 0, 0, 0)
    assert store.recorded == 3
    # A rename on reload: the new name is up, the old one's interval ends.
    recorder.node_name = "lb-1"
    store.mark("node", "lb-1", "up", "serving", now)
    node.name = "lb-2"
    recorder.reconfigured(node)  # type: ignore[arg-type]
    assert store.flush()
    got = store.intervals(now - 1, now + 1)
    assert got["node", "lb-1"][0][2] == now  # ended
    assert got["node", "lb-2"][0][0] == "up" and got["node", "lb-2"][0][3] == "renamed from lb-1"
    store.close()
