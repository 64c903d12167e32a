"""Slow start with a real node and real backends: a server back from down takes a visibly
smaller share of the requests early in its ramp than at the end of it."""

from __future__ import annotations

import time
from collections import Counter

from tests.support.node import Harness, HttpClient, count_backends, one_pool_config, wait_until


def test_a_server_back_from_down_takes_a_growing_share(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    node = harness.node(one_pool_config([a1, a2], {"slow_start": "4s"}))

    def state() -> str:
        return str(node.server_status("app", "a2")["state"])

    a2.sick()  # its /healthz answers 503: down after `fall` checks
    wait_until(lambda: state() == "down", message="a2 down")
    a2.well()
    wait_until(lambda: state() == "up", message="a2 back up")
    back_at = time.monotonic()
    assert node.server_status("app", "a2")["ramp"] < 0.5

    early: Counter[str] = Counter()
    with HttpClient(node.addr()) as client:
        while time.monotonic() - back_at < 1.0:
            response = client.request()
            assert response.status == 200, response
            early[response.header("X-Backend") or "?"] += 1
    wait_until(
        lambda: node.server_status("app", "a2")["ramp"] == 1.0, 15.0, message="ramp over"
    )
    late = count_backends(node.addr(), 200)

    # In its first second a2 is at 10% to 32% of its weight: about a sixth of the requests
    # (a ninth to a quarter); after the ramp, roundrobin gives it half.
    assert sum(early.values()) >= 20, early
    early_share = early["a2"] / sum(early.values())
    late_share = late["a2"] / sum(late.values())
    assert 0 < early_share < 0.3, early
    assert late_share > 0.45, late
    assert "slow start from 10% of its weight to all of it in 4s" in node.log_tail()
