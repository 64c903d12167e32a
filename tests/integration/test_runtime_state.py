"""Drain, maint and weights set at runtime survive a restart of the node."""

from __future__ import annotations

import json

from tests.support.node import Harness, count_backends, one_pool_config


def test_drain_maint_and_weight_survive_a_restart(harness: Harness) -> None:
    a1, a2, a3 = harness.backends("a1", "a2", "a3")
    config = one_pool_config([a1, a2, a3])
    node = harness.node(config)
    node.set_state("app", "a1", "drain")
    node.set_state("app", "a2", "maint")
    node.set_weight("app", "a3", 7)
    saved = json.loads((harness.directory / "state" / "server-state.json").read_text())
    assert saved["servers"] == {
        "app": {"a1": {"state": "drain"}, "a2": {"state": "maint"}, "a3": {"weight": 7}}
    }
    assert node.stop() == 0

    restarted = harness.node(config)
    assert restarted.server_status("app", "a1")["state"] == "drain"
    assert restarted.server_status("app", "a2")["state"] == "maint"
    assert restarted.server_status("app", "a3")["weight"] == 7
    # New clients go only to the one server still in service.
    assert count_backends(restarted.addr(), 30) == {"a3": 30}
    # Putting a server back in service is remembered too (the entry goes away).
    restarted.set_state("app", "a1", "ready")
    saved = json.loads((harness.directory / "state" / "server-state.json").read_text())
    assert "a1" not in saved["servers"]["app"]


def test_state_of_a_server_no_longer_configured_is_ignored(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    node = harness.node(one_pool_config([a1, a2]))
    node.set_state("app", "a2", "maint")
    assert node.stop() == 0
    # a2 left the config: the node starts and serves, and a1 is untouched.
    restarted = harness.node(one_pool_config([a1]))
    assert restarted.server_status("app", "a1")["state"] == "up"
    assert count_backends(restarted.addr(), 10) == {"a1": 10}
