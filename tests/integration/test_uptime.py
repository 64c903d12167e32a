"""Uptime of a real node: GET /v1/uptime and `ninelives uptime` with a backend killed,
the node's own downtime after kill -9 and after a clean stop, maintenance windows."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.support.model import observed
from tests.support.node import (
    NINELIVES,
    PATIENT_HEALTH,
    Harness,
    Node,
    count_backends,
    one_pool_config,
    wait_until,
)


def report(node: Node, query: str = "window=1h") -> dict[str, Any]:
    response = node.admin_request("GET", f"/v1/uptime?{query}", token=None)
    assert response.status == 200, response
    value: dict[str, Any] = response.json()
    return value


def entity(data: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    for item in data["entities"]:
        if item["kind"] == kind and item["name"] == name:
            found: dict[str, Any] = item
            return found
    raise AssertionError(f"no {kind} {name} in {[e['name'] for e in data['entities']]}")


def cli(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    admin = f"{node.admin[0]}:{node.admin[1]}"
    return subprocess.run(
        [str(NINELIVES), "uptime", "--admin", admin, *args],
        capture_output=True, text=True, timeout=60,
    )


def test_uptime_with_a_backend_killed_over_the_api_and_the_cli(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    node = harness.node(one_pool_config([a1, a2], {"health": PATIENT_HEALTH}))
    assert sum(count_backends(node.addr(), 20).values()) == 20
    a2.kill()
    wait_until(lambda: node.server_status("app", "a2")["state"] == "down", timeout=10,
               message="a2 down")

    def counted() -> dict[str, Any] | None:
        data = report(node)
        web = entity(data, "listener", "web")
        a2_now = entity(data, "server", "a2")
        return data if web["requests"]["total"] >= 20 and a2_now["incidents"] else None

    data = wait_until(counted, timeout=15, interval=0.2, message="requests sampled, a2 down")
    assert data["window_s"] == 3600 and data["node"] == "lb-test"
    down = entity(data, "server", "a2")
    assert down["pool"] == "app" and down["provider"] == "default"
    assert 0 <= down["availability"] < 1 and down["downtime_s"] > 0
    (incident,) = down["incidents"]
    assert incident["end"] is None and incident["cause"] == "2 checks failed: connect refused"
    assert incident["state"] == "down"
    for kind, name in (("server", "a1"), ("pool", "app"), ("provider", "default"),
                       ("listener", "web"), ("node", "lb-test")):
        assert entity(data, kind, name)["availability"] == 1.0, (kind, name)
        assert entity(data, kind, name)["incidents"] == []
    web = entity(data, "listener", "web")
    assert web["requests"]["bad"] == 0 and web["requests"]["availability"] == 1.0
    assert data["store"]["error"] is None and data["store"]["recorded"] > 0

    as_json = cli(node, "--window", "1h", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert entity(json.loads(as_json.stdout), "server", "a2")["incident_count"] == 1
    as_csv = cli(node, "--window", "1h", "--format", "csv", "--kind", "server")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert set(rows) == {"a1", "a2"}
    assert rows["a1"]["availability"] == "1.0" and float(rows["a2"]["availability"]) < 1
    incidents = cli(node, "--incidents", "--format", "csv")
    assert "2 checks failed: connect refused" in incidents.stdout, incidents
    table = cli(node, "--window", "1h")
    assert table.returncode == 0 and "app/a2" in table.stdout, table
    bad = cli(node, "--window", "1x")
    assert bad.returncode == 1 and 'expected a window like 1h' in bad.stderr, bad

    a1.kill()  # now nothing serves: the pool and the listener are down, with the cause

    def listener_down() -> dict[str, Any] | None:
        incidents = entity(report(node, "window=10m"), "listener", "web")["incidents"]
        return incidents[0] if incidents else None

    cause = wait_until(listener_down, timeout=10, interval=0.1, message="listener down")
    assert cause["cause"].startswith("pool app: no server available:"), cause
    assert node.admin_request("POST", "/v1/uptime", {}).status == 405
    assert node.admin_request("GET", "/v1/uptime?window=soon", token=None).status == 400
    assert node.admin_request("GET", "/v1/uptime?kind=galaxy", token=None).status == 400


def test_a_killed_node_counts_the_time_it_was_gone_as_downtime(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    config = one_pool_config([a1])
    node = harness.node(config)
    wait_until(lambda: entity(report(node), "node", "lb-test")["uptime_s"] > 0, timeout=10,
               message="the node's up interval committed")
    killed_at = time.time()
    node.kill()
    spawned_at = time.time()
    restarted = harness.node(config)
    ready_at = time.time()

    def gap(kind: str, name: str) -> dict[str, Any] | None:
        """The incident of the gap, once its end (serving again) is recorded too."""
        gone = [i for i in entity(report(restarted), kind, name)["incidents"]
                if i["cause"].startswith("node not running: killed or crashed")]
        assert len(gone) <= 1, gone
        return gone[0] if gone and gone[0]["end"] is not None else None

    for kind, name in (("node", "lb-test"), ("listener", "web")):
        incident = wait_until(lambda k=kind, n=name: gap(k, n), timeout=10, interval=0.05,
                              message=f"the gap of {kind} {name}")
        # Down from its last heartbeat (at most a second or so before the kill on a busy
        # machine) until it served again.
        assert killed_at - 5 <= incident["start"] <= killed_at, (incident, killed_at)
        assert spawned_at <= incident["end"] <= ready_at, (incident, spawned_at, ready_at)
        assert incident["downtime_s"] >= spawned_at - killed_at
    # The server was not observed meanwhile: no guess either way.
    assert entity(report(restarted), "server", "a1")["incidents"] == []

    assert restarted.stop() == 0
    again = harness.node(config)

    def stopped() -> list[dict[str, Any]]:
        return [i for i in entity(report(again), "listener", "web")["incidents"]
                if i["cause"] == "node not running: stopped" and i["end"] is not None]

    assert len(wait_until(stopped, timeout=10, interval=0.05, message="the stop")) == 1


def test_downtime_inside_a_maintenance_window_is_reported_apart(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    paris = ZoneInfo("Europe/Paris")
    began = datetime.now(paris) - timedelta(minutes=1)
    config = one_pool_config([a1, a2])
    config["uptime"] = {"maintenance": [{
        "pool": "app", "every": "day", "start": began.strftime("%H:%M"), "duration": "1h",
        "timezone": "Europe/Paris", "reason": "upgrade",
    }]}
    node = harness.node(config)
    a2.kill()
    wait_until(lambda: node.server_status("app", "a2")["state"] == "down", timeout=10,
               message="a2 down")
    wait_until(lambda: entity(report(node), "server", "a2")["maintenance_downtime_s"] > 0,
               timeout=10, interval=0.1, message="a2's downtime recorded")
    data = report(node)
    a2_report = entity(data, "server", "a2")
    assert a2_report["downtime_s"] == 0 and a2_report["incidents"] == []
    assert a2_report["availability"] is None  # all it was seen doing was in maintenance
    assert a2_report["maintenance_s"] > 0
    assert entity(data, "node", "lb-test")["maintenance_s"] == 0  # the pool's window only
    (window,) = data["maintenance"]
    assert (window["reason"], window["scope"]) == ("upgrade", "pool app")
    assert window["end"] - window["start"] == 3600

    # The model's comparison read from the state directory takes the windows out when it
    # has the node's config, as the admin API does; without it, it cannot know them.
    with_config = observed("--config", str(harness.directory / "lb-test.yaml"))
    assert (with_config["incidents"], with_config["observed"]) == (0, None)
    assert with_config["explanation"] == ("the servers of pool app were not observed up or "
                                          "down in the window")
    assert observed("--state-dir", str(harness.directory / "state"))["incidents"] == 1


def test_a_server_removed_by_a_reload_is_no_longer_counted(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    node = harness.node(one_pool_config([a1, a2]))
    reloaded_at = time.time()
    harness.write_config(one_pool_config([a1]))
    assert node.admin_request("POST", "/v1/reload", {}).status == 200

    def a2_after(moment: float) -> tuple[float, dict[str, Any]] | None:
        data = report(node)
        if not any(e["kind"] == "server" and e["name"] == "a2" for e in data["entities"]):
            return None  # its first interval is not committed yet
        a2_report = entity(data, "server", "a2")
        if data["to"] > moment + 0.5 and a2_report.get("configured") is False:
            return data["to"], a2_report
        return None

    # Once the reload is recorded (well within a second), a2's up time stops growing.
    seen_at, first = wait_until(lambda: a2_after(reloaded_at), timeout=10, interval=0.1,
                                message="a2 in the history only")
    _, later = wait_until(lambda: a2_after(seen_at), timeout=10, interval=0.1,
                          message="time passing")
    assert later["uptime_s"] == first["uptime_s"] > 0
    assert first["uptime_s"] < time.time() - reloaded_at


def test_a_node_whose_history_cannot_be_stored_still_serves(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    blocker = harness.directory / "not-a-directory"
    blocker.write_text("")
    config = one_pool_config([a1])
    config["node"] = {"name": "lb-test", "state_dir": str(blocker / "state")}
    node = harness.node(config)
    assert count_backends(node.addr(), 5) == {"a1": 5}
    response = node.admin_request("GET", "/v1/uptime", token=None)
    assert response.status == 503 and "uptime history is off" in response.json()["error"]
