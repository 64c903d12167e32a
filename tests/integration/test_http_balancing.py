"""Which server gets each request: algorithms, backup tiers, stickiness, drain and maint.

Real backends and a real node; the answer's ``X-Backend`` header says who served it.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.support.node import (
    Harness,
    HttpClient,
    count_backends,
    http_request,
    one_pool_config,
    server_entries,
    wait_until,
)


def served_by(addr: tuple[str, int], path: str = "/", **kw: Any) -> str | None:
    """Who answered one request, or None when it failed (tolerated while health catches up)."""
    try:
        response = http_request(addr, "GET", path, timeout=5, **kw)
    except OSError:
        return None
    return response.header("X-Backend") if response.status == 200 else None


def test_roundrobin_equal_shares(harness: Harness) -> None:
    backends = harness.backends("a1", "a2", "a3")
    node = harness.node(one_pool_config(backends, {"balance": "roundrobin"}))
    seen = count_backends(node.addr(), 300)
    assert set(seen) == {"a1", "a2", "a3"}
    for name in ("a1", "a2", "a3"):
        assert abs(seen[name] - 100) <= 1, seen


def test_roundrobin_weights_three_to_one(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    config = one_pool_config([a1, a2], {"balance": "roundrobin"})
    config["pools"]["app"]["servers"][0]["weight"] = 3
    node = harness.node(config)
    seen = count_backends(node.addr(), 400)
    assert abs(seen["a1"] - 300) <= 4, seen
    assert abs(seen["a2"] - 100) <= 4, seen


def test_leastconn_sends_fewer_requests_to_the_slow_server(harness: Harness) -> None:
    slow, fast = harness.backends("slow", "fast", delay={"slow": 0.2})
    node = harness.node(one_pool_config([slow, fast], {"balance": "leastconn"}))
    addr = node.addr()

    def client(_: int) -> Counter[str]:
        return count_backends(addr, 10)

    seen: Counter[str] = Counter()
    with ThreadPoolExecutor(8) as pool:
        for result in pool.map(client, range(8)):
            seen.update(result)
    assert sum(seen.values()) == 80
    # Round robin would give the slow server 40 of 80; least connections sees it busy.
    assert seen["slow"] <= 16, seen
    assert seen["fast"] >= 64, seen


def test_random2_spreads_over_all_servers(harness: Harness) -> None:
    backends = harness.backends("a1", "a2", "a3")
    node = harness.node(one_pool_config(backends, {"balance": "random2"}))
    seen = count_backends(node.addr(), 300)
    for name in ("a1", "a2", "a3"):
        assert seen[name] >= 45, seen


def test_first_sends_everything_to_the_first_available_server(harness: Harness) -> None:
    backends = harness.backends("a1", "a2", "a3")
    node = harness.node(one_pool_config(backends, {"balance": "first"}))
    assert count_backends(node.addr(), 50) == Counter({"a1": 50})
    node.set_state("app", "a1", "maint")
    assert count_backends(node.addr(), 50) == Counter({"a2": 50})


def test_hash_on_client_ip_is_stable_per_client_and_spreads_clients(harness: Harness) -> None:
    backends = harness.backends("a1", "a2", "a3")
    node = harness.node(one_pool_config(backends, {"balance": "hash", "hash_on": "client_ip"}))
    addr = node.addr()
    # Every connection from 127.0.0.1 lands on one server.
    assert len({served_by(addr) for _ in range(20)}) == 1
    # Other loopback source addresses are other clients: each stable, together spread.
    by_client: dict[str, str | None] = {}
    for i in range(2, 26):
        source = f"127.0.0.{i}"
        answers = {served_by(addr, source=source) for _ in range(3)}
        assert len(answers) == 1 and None not in answers, (source, answers)
        by_client[source] = answers.pop()
    assert len(set(by_client.values())) >= 2, by_client


def test_hash_on_header_is_stable_per_user_and_spreads_users(harness: Harness) -> None:
    backends = harness.backends("a1", "a2", "a3")
    node = harness.node(one_pool_config(backends, {"balance": "hash", "hash_on": "header:X-User"}))
    by_user: dict[str, str] = {}
    with HttpClient(node.addr()) as client:
        for _ in range(3):
            for user in range(40):
                response = client.request("GET", "/", {"X-User": f"user-{user}"})
                assert response.status == 200
                backend = response.header("X-Backend")
                assert backend is not None
                assert by_user.setdefault(f"user-{user}", backend) == backend, user
    shares = Counter(by_user.values())
    assert len(shares) == 3, shares


def test_backup_server_takes_over_when_primary_dies_and_gives_back(harness: Harness) -> None:
    a1, b1 = harness.backends("a1", "b1")
    config = one_pool_config([a1])
    config["pools"]["app"]["servers"] += server_entries([b1], backup=True)
    node = harness.node(config)
    addr = node.addr()
    assert count_backends(addr, 20) == Counter({"a1": 20})

    a1.stop()
    wait_until(lambda: served_by(addr) == "b1", timeout=10, message="backup b1 serving")
    assert count_backends(addr, 20) == Counter({"b1": 20})

    harness.backend("a1", port=a1.port)
    wait_until(lambda: served_by(addr) == "a1", timeout=10, message="primary a1 back")
    assert count_backends(addr, 20) == Counter({"a1": 20})


def test_tiers_by_provider_fail_over_and_back(harness: Harness) -> None:
    a1, a2, b1 = harness.backends("a1", "a2", "b1")
    config = one_pool_config([])
    pool = config["pools"]["app"]
    del pool["servers"]
    pool["balance"] = "roundrobin"
    pool["tiers"] = [
        {"provider": "cloud-a", "servers": server_entries([a1, a2])},
        {"provider": "cloud-b", "servers": server_entries([b1])},
    ]
    node = harness.node(config)
    addr = node.addr()

    (status_pool,) = [p for p in node.status()["pools"] if p["name"] == "app"]
    assert [t["provider"] for t in status_pool["tiers"]] == ["cloud-a", "cloud-b"]
    assert [[s["name"] for s in t["servers"]] for t in status_pool["tiers"]] == [
        ["a1", "a2"],
        ["b1"],
    ]
    assert count_backends(addr, 40) == Counter({"a1": 20, "a2": 20})

    a1.sick()
    a2.sick()
    wait_until(lambda: served_by(addr) == "b1", timeout=10, message="tier cloud-b serving")
    assert count_backends(addr, 20) == Counter({"b1": 20})

    a1.well()
    wait_until(lambda: served_by(addr) == "a1", timeout=10, message="tier cloud-a back")
    assert count_backends(addr, 20) == Counter({"a1": 20})


def _sticky_node(harness: Harness) -> tuple[Any, tuple[str, int]]:
    backends = harness.backends("a1", "a2", "a3")
    node = harness.node(
        one_pool_config(backends, {"balance": "roundrobin", "sticky": {"cookie": "NLSTICKY"}})
    )
    return node, node.addr()


def test_sticky_cookie_is_inserted_and_followed(harness: Harness) -> None:
    _, addr = _sticky_node(harness)
    first = http_request(addr, "GET", "/")
    assert first.status == 200
    backend = first.header("X-Backend")
    assert first.header("Set-Cookie") == f"NLSTICKY={backend}; Path=/; HttpOnly"

    for pinned in ("a1", "a2", "a3"):
        seen = count_backends(addr, 10, headers={"Cookie": f"NLSTICKY={pinned}"})
        assert seen == Counter({pinned: 10})
    # The cookie is found among others too.
    seen = count_backends(addr, 5, headers={"Cookie": "a=b; NLSTICKY=a2; c=d"})
    assert seen == Counter({"a2": 5})


def test_sticky_client_is_repinned_when_its_server_goes_to_maint(harness: Harness) -> None:
    node, addr = _sticky_node(harness)
    node.set_state("app", "a2", "maint")
    response = http_request(addr, "GET", "/", {"Cookie": "NLSTICKY=a2"})
    assert response.status == 200
    other = response.header("X-Backend")
    assert other in ("a1", "a3")
    assert response.header("Set-Cookie") == f"NLSTICKY={other}; Path=/; HttpOnly"


def test_drain_keeps_pinned_clients_and_takes_no_new_ones(harness: Harness) -> None:
    node, addr = _sticky_node(harness)
    node.set_state("app", "a1", "drain")
    assert count_backends(addr, 10, headers={"Cookie": "NLSTICKY=a1"}) == Counter({"a1": 10})
    fresh = count_backends(addr, 30)
    assert fresh["a1"] == 0, fresh
    assert fresh["a2"] + fresh["a3"] == 30
    assert node.server_status("app", "a1")["state"] == "drain"


def test_maint_gets_no_traffic_and_ready_brings_it_back(harness: Harness) -> None:
    backends = harness.backends("a1", "a2", "a3")
    # Without slow start, so that its full share is back at once (test_slow_start ramps).
    pool = {"balance": "roundrobin", "slow_start": "0s"}
    node = harness.node(one_pool_config(backends, pool))
    addr = node.addr()
    node.set_state("app", "a2", "maint")
    assert node.server_status("app", "a2")["state"] == "maint"
    before = backends[1].stats()["requests"].get("/", 0)
    seen = count_backends(addr, 60)
    assert seen == Counter({"a1": 30, "a3": 30})
    assert backends[1].stats()["requests"].get("/", 0) == before

    node.set_state("app", "a2", "ready")
    seen = count_backends(addr, 60)
    assert all(abs(seen[name] - 20) <= 1 for name in ("a1", "a2", "a3")), seen


def test_state_change_without_token_is_refused(harness: Harness) -> None:
    backends = harness.backends("a1", "a2")
    node = harness.node(one_pool_config(backends))
    path = "/v1/pools/app/servers/a1/state"
    for token in (None, "wrong-token"):
        response = node.admin_request("POST", path, {"state": "maint"}, token=token)
        assert response.status in (401, 403), response
    assert count_backends(node.addr(), 10) == Counter({"a1": 5, "a2": 5})


def test_weight_change_via_api_changes_distribution(harness: Harness) -> None:
    backends = harness.backends("a1", "a2")
    node = harness.node(one_pool_config(backends, {"balance": "roundrobin"}))
    addr = node.addr()
    assert count_backends(addr, 100) == Counter({"a1": 50, "a2": 50})
    node.set_weight("app", "a1", 3)
    assert node.server_status("app", "a1")["weight"] == 3
    seen = count_backends(addr, 400)
    assert abs(seen["a1"] - 300) <= 4, seen
    assert abs(seen["a2"] - 100) <= 4, seen
