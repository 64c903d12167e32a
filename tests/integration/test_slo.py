"""SLOs of a real node: an outage burns the budget, the page alert fires, and the
webhooks reach a receiver that refuses the first delivery (500) and accepts the retry;
GET /v1/slo, `ninelives slo` and /metrics show it."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.node import (
    NINELIVES,
    Harness,
    HttpClient,
    count_backends,
    one_pool_config,
    wait_until,
)


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 500 to the first ``refuse`` posts."""

    def __init__(self, refuse: int) -> None:
        self.refuse = refuse
        self.attempts: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.attempts.append(body)
                    refused = len(receiver.attempts) <= receiver.refuse
                    if not refused:
                        receiver.accepted.append(body)
                self.send_response(500 if refused else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def find(self, **match: Any) -> dict[str, Any] | None:
        with self.lock:
            for body in self.accepted:
                if all(body.get(k) == v for k, v in match.items()):
                    return body
        return None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(refuse=1)
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def test_an_outage_pages_and_the_webhooks_arrive_after_a_refusal(
    harness: Harness, receiver: Receiver
) -> None:
    (a1,) = harness.backends("a1")
    config = one_pool_config([a1])
    config["uptime"] = {
        "slos": [
            {"name": "web-requests", "listener": "web", "target": "99%", "min_requests": 10},
            {"name": "app-time", "pool": "app", "target": "99.9%", "kind": "time",
             "window": "7d"},
        ],
        "webhooks": [receiver.url],
    }
    node = harness.node(config)
    assert sum(count_backends(node.addr(), 20).values()) == 20
    a1.kill()
    wait_until(lambda: node.status()["pools"][0]["state"] == "down", timeout=10,
               message="the pool down")
    with HttpClient(node.addr()) as client:  # every request now fails (503, no server)
        statuses = {client.request("GET", "/").status for _ in range(30)}
    assert statuses == {503}

    # The incident: refused once (500), delivered on the retry.
    started = wait_until(lambda: receiver.find(type="incident", kind="pool", state="started"),
                         timeout=15, interval=0.1, message="the incident webhook")
    assert started["name"] == "app" and started["to"] == "down", started
    assert started["reason"].startswith("no server available"), started
    assert started["node"] == "lb-test"
    assert receiver.attempts[0]["type"] == "incident"  # the refused first attempt

    # The SLO alert: sampled (2 s), evaluated (10 s), posted.
    fired = wait_until(lambda: receiver.find(type="alert", slo="web-requests", state="firing",
                                             severity="page"),
                       timeout=40, interval=0.2, message="the page alert webhook")
    assert fired["listener"] == "web" and fired["target"] == 0.99
    assert "both above 14.4x" in fired["reason"], fired
    assert fired["budget_left_ratio"] < 0

    response = node.admin_request("GET", "/v1/slo", token=None)
    assert response.status == 200, response
    report = response.json()
    by_name = {slo["name"]: slo for slo in report["slos"]}
    web = by_name["web-requests"]
    assert web["valid"] >= 50 and web["good"] == 20 and web["met"] is False
    assert web["alerts"][0] == {"severity": "page", "state": "firing",
                                "reason": web["alerts"][0]["reason"]}
    assert web["budget"]["left_ratio"] < 0
    app = by_name["app-time"]
    assert app["pool"] == "app" and app["kind"] == "time" and app["sli"] < 1
    assert report["webhooks"][0]["url"] == receiver.url
    assert report["webhooks"][0]["failed_attempts"] >= 1

    admin = f"{node.admin[0]}:{node.admin[1]}"
    table = subprocess.run([str(NINELIVES), "slo", "--admin", admin], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
    assert table.returncode == 0, table.stderr
    assert "web-requests" in table.stdout and "page firing" in table.stdout, table.stdout
    as_json = subprocess.run([str(NINELIVES), "slo", "--admin", admin, "--json"],
                             capture_output=True, text=True, timeout=60)
    assert json.loads(as_json.stdout)["slos"][0]["name"] == "web-requests"

    metrics = node.admin_request("GET", "/metrics", token=None).body.decode()
    assert 'ninelives_slo_alert_firing{severity="page",slo="web-requests"} 1.0' in metrics
    assert 'ninelives_slo_target{slo="web-requests"} 0.99' in metrics
    assert 'ninelives_slo_burn_rate{slo="web-requests",window="5m"}' in metrics
    assert 'ninelives_slo_error_budget_left_ratio{slo="app-time"}' in metrics


def test_alert_state_survives_a_restart(harness: Harness) -> None:
    """A page still firing after a restart is not sent again as new; one that no longer
    fires when the node is back is sent as resolved. (It stops firing here because the
    SLO's target is lowered while the node is down: burn-rate windows take 5 minutes
    to clear.)"""
    receiver = Receiver(refuse=0)
    try:
        (a1,) = harness.backends("a1")
        config = one_pool_config([a1])
        slo = {"name": "web-requests", "listener": "web", "target": "99%", "min_requests": 10}
        config["uptime"] = {"slos": [slo], "webhooks": [receiver.url]}
        node = harness.node(config)
        assert sum(count_backends(node.addr(), 20).values()) == 20
        a1.kill()
        wait_until(lambda: node.status()["pools"][0]["state"] == "down", timeout=10,
                   message="the pool down")
        with HttpClient(node.addr()) as client:
            assert {client.request("GET", "/").status for _ in range(30)} == {503}
        page = {"type": "alert", "slo": "web-requests", "severity": "page"}
        wait_until(lambda: receiver.find(**page, state="firing"), timeout=40, interval=0.2,
                   message="the page alert webhook")
        assert node.stop() == 0

        def alerts() -> list[tuple[str, str]]:
            with receiver.lock:
                return [(b["severity"], b["state"]) for b in receiver.accepted
                        if b["type"] == "alert"]

        before = alerts()  # the page fired; the ticket (1x over 3 d / 6 h) may have too

        restarted = harness.node(config)

        def evaluated_and_sent() -> bool:
            metrics = restarted.admin_request("GET", "/metrics", token=None).body.decode()
            if 'ninelives_slo_alert_firing{severity="page",slo="web-requests"} 1.0' not in metrics:
                return False
            slo_report = restarted.admin_request("GET", "/v1/slo", token=None).json()
            return all(hook["waiting"] == 0 for hook in slo_report["webhooks"])

        wait_until(evaluated_and_sent, timeout=20, interval=0.1,
                   message="the restarted node's first evaluation, its webhooks sent")
        assert alerts() == before  # nothing sent again as new
        assert restarted.stop() == 0

        config["uptime"]["slos"] = [{**slo, "target": "10%"}]  # no longer burning
        again = harness.node(config)
        resolved = wait_until(lambda: receiver.find(**page, state="resolved"), timeout=20,
                              interval=0.1, message="the resolved webhook")
        assert resolved["node"] == "lb-test" and resolved["target"] == 0.1, resolved
        assert again.stop() == 0
        after = alerts()[len(before):]
        assert ("page", "resolved") in after and ("page", "firing") not in after, after
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
