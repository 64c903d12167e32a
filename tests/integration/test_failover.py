"""Failover without errors: retries on another server and outlier ejection, with real
backends and a real node.

Health checks are set to run once an hour in most of these tests, so that what happens is
the work of live traffic alone (retries, ejection), not of active checks.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.node import (
    Backend,
    Harness,
    HttpClient,
    Node,
    http_request,
    one_pool_config,
    wait_until,
)

SLOW_HEALTH: dict[str, Any] = {"tcp": {}, "interval": "1h", "timeout": "1s", "rise": 1, "fall": 1}


def flaky_hits(backend: Backend) -> int:
    return int(backend.stats()["requests"].get("/flaky", 0))


def pool_metric(node: Node, name: str, **labels: str) -> float:
    """One counter of the node's /metrics (``name`` without ``_total``), 0 when absent."""
    text = node.admin_request("GET", "/metrics").body.decode()
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == f"{name}_total" and s.labels == labels
    ]
    assert len(found) <= 1, found
    return found[0] if found else 0.0


def test_a_killed_server_costs_clients_nothing_and_is_ejected_within_a_second(
    harness: Harness,
) -> None:
    a1, a2, a3 = harness.backends("a1", "a2", "a3")
    node = harness.node(one_pool_config([a1, a2, a3], {"health": SLOW_HEALTH}))
    with HttpClient(node.addr()) as client:
        for _ in range(6):
            assert client.request().status == 200
        a2.kill()
        killed_at = time.monotonic()
        statuses = []
        ejected_after: float | None = None
        while time.monotonic() - killed_at < 1.0 or ejected_after is None:
            response = client.request()
            statuses.append(response.status)
            assert response.header("X-Backend") in ("a1", "a3"), response
            if ejected_after is None and node.server_status("app", "a2")["state"] == "ejected":
                ejected_after = time.monotonic() - killed_at
            assert time.monotonic() - killed_at < 10, "a2 was never ejected"
    assert set(statuses) == {200}, statuses
    assert ejected_after is not None and ejected_after < 1.0, ejected_after
    status = node.server_status("app", "a2")
    assert "3 consecutive failures" in status["reason"], status
    assert "connect" in status["reason"], status
    assert pool_metric(node, "ninelives_pool_retries", pool="app", cause="connect-failure") >= 1
    assert pool_metric(node, "ninelives_server_ejections", pool="app", server="a2") == 1


def test_a_5xx_is_retried_on_another_server_and_ejects_the_failing_one(
    harness: Harness,
) -> None:
    a1, a2 = harness.backends("a1", "a2")
    a1.sick()
    node = harness.node(one_pool_config([a1, a2], {"health": SLOW_HEALTH}))
    with HttpClient(node.addr()) as client:
        for _ in range(10):
            response = client.request("GET", "/flaky")
            assert (response.status, response.body) == (200, b"a2 0"), response
    assert 1 <= flaky_hits(a1) <= 3  # three 503s in a row eject it
    assert node.server_status("app", "a1")["state"] == "ejected"
    assert pool_metric(node, "ninelives_pool_retries", pool="app", cause="503") == flaky_hits(a1)
    assert pool_metric(node, "ninelives_pool_retry_outcomes", pool="app", outcome="answered") >= 1


def test_a_post_is_never_replayed_once_sent(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    a1.sick()
    pool = {"health": SLOW_HEALTH, "outlier": {"enabled": False}}
    node = harness.node(one_pool_config([a1, a2], pool))
    statuses = []
    with HttpClient(node.addr()) as client:
        for _ in range(6):
            statuses.append(client.request("POST", "/flaky", body=b"order=1").status)
    # Round robin: every other POST reached a1 and got its 503, never replayed to a2.
    assert sorted(statuses) == [200, 200, 200, 503, 503, 503], statuses
    assert (flaky_hits(a1), flaky_hits(a2)) == (3, 3)


def test_a_put_with_a_small_body_is_replayed_with_its_body(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    a1.sick()
    pool = {"health": SLOW_HEALTH, "outlier": {"enabled": False}}
    node = harness.node(one_pool_config([a1, a2], pool))
    with HttpClient(node.addr()) as client:
        for _ in range(4):
            response = client.request("PUT", "/flaky", body=b"x" * 5000)
            assert (response.status, response.body) == (200, b"a2 5000"), response
        # Larger than retries.max_body (64 KiB): not kept, so a1's 503 reaches the client.
        big = [client.request("PUT", "/flaky", body=b"y" * 70_000).status for _ in range(2)]
    assert sorted(big) == [200, 503], big


def test_a_response_timeout_is_retried_on_another_server(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2", delay={"a1": 5.0})
    pool = {
        "health": SLOW_HEALTH,
        "timeouts": {"connect": "1s", "response": "300ms", "idle": "60s"},
    }
    node = harness.node(one_pool_config([a1, a2], pool))
    for _ in range(4):
        started = time.monotonic()
        response = http_request(node.addr(), "GET", "/")
        assert (response.status, response.body) == (200, b"a2"), response
        assert time.monotonic() - started < 3.0
    assert pool_metric(node, "ninelives_pool_retries", pool="app", cause="timeout") >= 1


def test_the_retry_budget_holds_when_every_server_fails(harness: Harness) -> None:
    backends = harness.backends("a1", "a2", "a3")
    for backend in backends:
        backend.sick()
    # Without a budget to spend, a pool-wide failure is not multiplied by retries.
    pool = {
        "health": SLOW_HEALTH,
        "outlier": {"enabled": False},
        "retries": {"budget": "0%", "min_retries": 0},
    }
    node = harness.node(one_pool_config(backends, pool))
    with HttpClient(node.addr()) as client:
        assert [client.request("GET", "/flaky").status for _ in range(9)] == [503] * 9
    assert sum(flaky_hits(b) for b in backends) == 9
    assert pool_metric(node, "ninelives_pool_retry_outcomes", pool="app", outcome="budget") == 9


def test_retries_stop_after_the_attempts(harness: Harness) -> None:
    backends = harness.backends("a1", "a2", "a3")
    for backend in backends:
        backend.sick()
    pool = {"health": SLOW_HEALTH, "outlier": {"enabled": False}, "retries": {"attempts": 1}}
    node = harness.node(one_pool_config(backends, pool))
    with HttpClient(node.addr()) as client:
        assert [client.request("GET", "/flaky").status for _ in range(4)] == [503] * 4
    # Each request: the first try and one retry, on two different servers.
    assert sum(flaky_hits(b) for b in backends) == 8
    outcome = pool_metric(node, "ninelives_pool_retry_outcomes", pool="app", outcome="exhausted")
    assert outcome == 4


def test_an_ejected_server_is_back_after_its_ejection(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    a1.sick()
    pool = {"health": SLOW_HEALTH, "outlier": {"ejection": "1s"}}
    node = harness.node(one_pool_config([a1, a2], pool))
    with HttpClient(node.addr()) as client:
        for _ in range(6):
            assert client.request("GET", "/flaky").status == 200
        assert node.server_status("app", "a1")["state"] == "ejected"
        a1.well()
        wait_until(lambda: node.server_status("app", "a1")["state"] == "up", 5.0, message="a1 back")
        # Back in slow start: a tenth of its weight at first, so one request in eleven.
        backends = {client.request("GET", "/flaky").header("X-Backend") for _ in range(30)}
    assert backends == {"a1", "a2"}


def test_a_hung_server_found_down_by_its_check_has_its_requests_retried_at_once(
    harness: Harness,
) -> None:
    a1, a2 = harness.backends("a1", "a2")
    # Checks a second apart: the first requests reach a1 before a check can find it down,
    # also on a busy machine (with 200 ms, a slow start of the requests once let the check
    # win, and nothing was left to retry).
    health = {"http": {"path": "/healthz"}, "interval": "1s", "timeout": "100ms", "fall": 2}
    node = harness.node(one_pool_config([a1, a2], {"health": health}))
    os.kill(a1.pid, signal.SIGSTOP)  # hung: the kernel still accepts its connections
    try:
        started = time.monotonic()
        bodies = [http_request(node.addr(), "GET", "/").body for _ in range(4)]
        elapsed = time.monotonic() - started
        state = node.server_status("app", "a1")["state"]  # while it is still hung
    finally:
        os.kill(a1.pid, signal.SIGCONT)
    # The request that went to a1 waited for the check to fail (at most about 1.5 s), not
    # for the 30 s response timeout.
    assert bodies == [b"a2"] * 4, bodies
    assert elapsed < 5.0, elapsed
    assert state == "down"
    assert pool_metric(node, "ninelives_pool_retries", pool="app", cause="timeout") >= 1


def test_every_request_held_by_a_hung_server_is_rescued_whatever_the_budget(
    harness: Harness,
) -> None:
    """A hung server holds many requests at once; when its check finds it down they all go
    elsewhere. The budget (here none at all) bounds retries of a sick pool, not these."""
    a1, a2 = harness.backends("a1", "a2")
    health = {"http": {"path": "/healthz"}, "interval": "200ms", "timeout": "100ms", "fall": 2}
    pool = {"health": health, "retries": {"budget": "0%", "min_retries": 0}}
    node = harness.node(one_pool_config([a1, a2], pool))
    os.kill(a1.pid, signal.SIGSTOP)
    try:
        bodies: list[bytes] = []
        lock = threading.Lock()

        def one() -> None:
            body = http_request(node.addr(), "GET", "/").body
            with lock:
                bodies.append(body)

        clients = [threading.Thread(target=one) for _ in range(12)]
        started = time.monotonic()
        for client in clients:
            client.start()
        for client in clients:
            client.join(20)
        elapsed = time.monotonic() - started
    finally:
        os.kill(a1.pid, signal.SIGCONT)
    assert sorted(bodies) == [b"a2"] * 12, bodies
    assert elapsed < 5.0, elapsed  # rescued at the check, not at SIGCONT or the timeout
    assert pool_metric(node, "ninelives_pool_retries", pool="app", cause="timeout") >= 1


class _SlamServer:
    """A server that accepts and at once resets each connection (a process dying between
    its accept and its read)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # a reset, as from a killed process

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


def test_a_server_that_resets_every_new_connection_costs_no_get(harness: Harness) -> None:
    """Whether the reset is read before or after the request was written (the first order
    is pinned down by tests/unit/test_connect_race.py), the GET goes to another server."""
    (a2,) = harness.backends("a2")
    slam = _SlamServer()
    try:
        # A check that always passes: a1 stays in rotation (a TCP check might see the reset).
        health = {**SLOW_HEALTH, "tcp": None, "command": "true"}
        config = one_pool_config([a2], {"health": health, "outlier": {"enabled": False}})
        config["pools"]["app"]["servers"].insert(
            0, {"name": "a1", "address": f"127.0.0.1:{slam.port}"}
        )
        node = harness.node(config)
        for _ in range(20):
            # Each request on a new client connection, so round robin sends every other
            # one to a1 on a new server connection that is gone at once.
            response = http_request(node.addr(), "GET", "/", timeout=5)
            assert (response.status, response.body) == (200, b"a2"), response
        a1 = node.server_status("app", "a1")
        assert slam.accepted >= 10, (slam.accepted, a1["state"], a1["reason"], a1["requests"])
    finally:
        slam.stop()
