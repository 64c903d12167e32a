"""Cluster-wide downtime accounting: two real nodes on loopback share a local coordinator.
A node killed (kill -9) and started again counts its gap as its own downtime, and as its
listener's and the cluster's only while no other node served."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.test_uptime import entity, report
from tests.support.node import Harness, Node, one_pool_config, wait_until

GAP_CAUSE = "node not running: killed or crashed"


def node_config(harness: Harness, backend: Any, name: str) -> dict[str, Any]:
    config = one_pool_config([backend])
    config["node"] = {"name": name, "state_dir": str(harness.directory / f"state-{name}")}
    config["cluster"] = {"coordinator": "local", "lease_ttl": "1s",
                         "local": {"path": str(harness.directory / "cluster.db")}}
    return config


def role(node: Node) -> str:
    role_now: str = node.status()["cluster"]["role"]
    return role_now


def up_interval_committed(node: Node, name: str) -> None:
    wait_until(lambda: entity(report(node), "node", name)["uptime_s"] > 0, timeout=10,
               message=f"{name}'s up interval committed")


def gap_recorded(node: Node, name: str) -> dict[str, Any]:
    """The report once the restarted node's own gap is recorded with its end."""

    def ended() -> dict[str, Any] | None:
        data = report(node)
        gone = [i for i in entity(data, "node", name)["incidents"]
                if i["cause"].startswith(GAP_CAUSE)]
        return data if gone and gone[0]["end"] is not None else None

    found: dict[str, Any] = wait_until(ended, timeout=10, interval=0.05,
                                       message=f"{name}'s gap recorded")
    return found


def restart_after_kill(
    harness: Harness, node: Node, config: dict[str, Any], meanwhile: Node | None = None
) -> Node:
    """kill -9 ``node``; start it again (once ``meanwhile`` leads, when given)."""
    name = config["node"]["name"]
    up_interval_committed(node, name)
    node.kill()
    if meanwhile is not None:
        wait_until(lambda: role(meanwhile) == "leader", timeout=10,
                   message=f"{meanwhile.name} took the lead")
    return harness.node(config, name)


def test_a_gap_another_node_served_is_not_the_listeners_downtime(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    one, two = node_config(harness, a1, "lb-1"), node_config(harness, a1, "lb-2")
    lb1 = harness.node(one, "lb-1")
    wait_until(lambda: role(lb1) == "leader", timeout=10, message="lb-1 leads")
    lb2 = harness.node(two, "lb-2")

    # The follower dies: the leader served all along, so lb-2's listener and the cluster
    # were never down; lb-2 itself was.
    lb2 = restart_after_kill(harness, lb2, two)
    data = gap_recorded(lb2, "lb-2")
    (own,) = entity(data, "node", "lb-2")["incidents"]
    assert own["downtime_s"] > 0
    for kind, name in (("listener", "web"), ("cluster", "cluster")):
        seen = entity(data, kind, name)
        assert seen["incidents"] == [] and seen["downtime_s"] == 0, (kind, seen)
    assert entity(data, "cluster", "cluster")["availability"] == 1.0

    # The leader dies: until lb-2 took the lead nobody served; from then on lb-2 did.
    killed_at = time.time()
    lb1 = restart_after_kill(harness, lb1, one, meanwhile=lb2)
    data = gap_recorded(lb1, "lb-1")
    (own,) = [i for i in entity(data, "node", "lb-1")["incidents"]
              if i["cause"].startswith(GAP_CAUSE)]
    for kind, name in (("listener", "web"), ("cluster", "cluster")):
        (gap,) = entity(data, kind, name)["incidents"]
        assert gap["cause"].startswith(GAP_CAUSE), gap
        assert gap["start"] == own["start"], (gap, own)
        # The takeover came within a lease and a bit (1 s), well before lb-1 served again.
        assert 0 < gap["downtime_s"] < own["downtime_s"], (gap, own)
        assert gap["end"] <= killed_at + 5, (gap, killed_at)
    assert role(lb1) == "follower"


def test_alone_the_gap_is_the_listeners_downtime(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    config = node_config(harness, a1, "lb-1")
    lb1 = restart_after_kill(harness, harness.node(config, "lb-1"), config)
    data = gap_recorded(lb1, "lb-1")
    (own,) = entity(data, "node", "lb-1")["incidents"]
    for kind, name in (("listener", "web"), ("cluster", "cluster")):
        (gap,) = entity(data, kind, name)["incidents"]
        assert gap["cause"].startswith(GAP_CAUSE)
        assert gap["start"] == own["start"], (kind, gap, own)
        # It ends when the listener is bound again, a moment before the node serves.
        assert abs(gap["downtime_s"] - own["downtime_s"]) < 0.5, (kind, gap, own)
