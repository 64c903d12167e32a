"""Panic with a real node: when every server's check fails but the servers answer (a
shared dependency of /healthz is down), requests are still served; a server that refuses
connections is never balanced over; and panic ends when enough servers pass again."""

from __future__ import annotations

from typing import Any

from tests.support.node import (
    Harness,
    Node,
    count_backends,
    http_request,
    one_pool_config,
    wait_until,
)


def pool_status(node: Node) -> dict[str, Any]:
    (pool,) = node.status()["pools"]
    found: dict[str, Any] = pool
    return found


def states(node: Node, *names: str) -> list[str]:
    return [str(node.server_status("app", name)["state"]) for name in names]


def test_panic_keeps_serving_from_servers_that_fail_their_checks(harness: Harness) -> None:
    a1, a2, a3 = harness.backends("a1", "a2", "a3")
    node = harness.node(one_pool_config([a1, a2, a3], {"slow_start": "0s"}))
    a3.kill()  # refuses connections: never part of a panic
    wait_until(lambda: states(node, "a3") == ["down"], message="a3 down")
    a1.sick()
    a2.sick()  # their /healthz says 503; their / still answers
    wait_until(lambda: states(node, "a1", "a2") == ["down", "down"], message="a1, a2 down")
    status = pool_status(node)
    assert status["panic"] is True, status
    assert status["panic_reason"] == (
        "0 of 3 servers of tier 0 healthy, below 50%; balancing over 2 that answer their checks"
    )
    assert count_backends(node.addr(), 40) == {"a1": 20, "a2": 20}
    assert "WARNING ninelives.pool: pool app in panic: " in node.log_tail()

    a1.well()
    wait_until(lambda: states(node, "a1") == ["up"], message="a1 up")
    # 1 of 3 is still below half, and a2 still answers: the panic goes on.
    assert pool_status(node)["panic_reason"].startswith("1 of 3 servers of tier 0 healthy")
    a2.well()
    wait_until(lambda: not pool_status(node)["panic"], message="panic over")
    assert states(node, "a1", "a2", "a3") == ["up", "up", "down"]
    assert count_backends(node.addr(), 40) == {"a1": 20, "a2": 20}
    assert "pool app out of panic: 2 of 3 servers of tier 0 healthy" in node.log_tail()


def test_without_panic_a_pool_whose_checks_all_fail_answers_503(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    node = harness.node(one_pool_config([a1, a2], {"panic": "0%"}))
    a1.sick()
    a2.sick()
    wait_until(lambda: states(node, "a1", "a2") == ["down", "down"], message="both down")
    assert pool_status(node)["panic"] is False
    assert http_request(node.addr()).status == 503
