"""Hot reload (SIGHUP, POST /v1/reload, ``ninelives reload``) of a real node under load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from copy import deepcopy
from typing import Any

from tests.support.load import Load
from tests.support.node import (
    NINELIVES,
    TOKEN,
    Harness,
    HttpClient,
    Node,
    count_backends,
    free_port,
    http_request,
    one_pool_config,
    refuses_connections,
    server_entries,
    wait_until,
)


def reload(node: Node, how: str = "api") -> dict[str, Any]:
    """Reload by the admin API or SIGHUP; wait until it is done; the API's answer."""
    before = node.status()["reloads"]
    if how == "sighup":
        os.kill(node.pid, signal.SIGHUP)
        wait_until(lambda: node.status()["reloads"] > before, message="the SIGHUP reload")
        return {}
    response = node.admin_request("POST", "/v1/reload", {})
    assert response.status == 200, response
    answer: dict[str, Any] = response.json()
    assert node.status()["reloads"] == before + 1
    return answer


def states(node: Node, pool: str = "app") -> dict[str, str]:
    for p in node.status()["pools"]:
        if p["name"] == pool:
            return {s["name"]: s["state"] for t in p["tiers"] for s in t["servers"]}
    raise AssertionError(f"no pool {pool}")


def test_five_reloads_under_load_fail_no_request(harness: Harness) -> None:
    a1, a2, a3 = harness.backends("a1", "a2", "a3")
    v1 = one_pool_config([a1, a2])
    node = harness.node(v1)
    add_a3 = deepcopy(v1)
    add_a3["pools"]["app"]["servers"] = server_entries([a1, a2, a3])
    drop_a1 = deepcopy(v1)
    drop_a1["pools"]["app"]["servers"] = server_entries([a2, a3])
    leastconn = deepcopy(drop_a1)
    leastconn["pools"]["app"]["balance"] = "leastconn"
    timeouts = deepcopy(leastconn)
    timeouts["pools"]["app"]["timeouts"] = {"connect": "2s", "response": "20s", "idle": "30s"}
    steps = [
        ("sighup", add_a3), ("api", drop_a1), ("sighup", leastconn), ("api", timeouts),
        ("api", add_a3),
    ]
    with Load(node.addr(), threads=4) as load:
        load.wait_for(200)
        for how, config in steps:
            harness.write_config(config)
            reload(node, how)
            load.wait_for(200)
            if config is drop_a1:
                # a1 is gone from the pool: new connections never reach it again.
                assert "a1" not in count_backends(node.addr(), 20)
        outcomes = load.stop()
    assert outcomes.failures == [], outcomes.failures[:10]
    assert outcomes.ok > 1000
    assert outcomes.backends["a3"] > 0  # added at the first reload, then taken
    assert node.status()["reloads"] == 5
    assert set(states(node)) == {"a1", "a2", "a3"}


def test_a_bad_config_is_refused_with_every_problem_and_changes_nothing(
    harness: Harness,
) -> None:
    a1, a2 = harness.backends("a1", "a2")
    config = one_pool_config([a1, a2])
    node = harness.node(config)
    bad = deepcopy(config)
    bad["pools"]["app"]["servers"][1]["address"] = "nowhere"
    bad["pools"]["app"]["balance"] = "sometimes"
    bad["listeners"][0]["pool"] = "missing"
    path = harness.write_config(bad)

    response = node.admin_request("POST", "/v1/reload", {})
    assert response.status == 400, response
    answer = response.json()
    problems = "\n".join(answer["problems"])
    assert answer["error"] == "the config has 3 problem(s); nothing changed"
    assert "pools.app.servers[1].address" in problems
    assert "pools.app.balance" in problems
    assert "listeners[0].pool" in problems

    # The CLI prints the same problems and exits 1.
    cli = subprocess.run(
        [str(NINELIVES), "reload", "--admin", f"{node.admin[0]}:{node.admin[1]}",
         "--token", TOKEN],
        capture_output=True, text=True, timeout=30,
    )
    assert cli.returncode == 1, cli
    assert "pools.app.servers[1].address" in cli.stderr and "HTTP 400" in cli.stderr

    # SIGHUP with the same file: refused and logged, the node goes on.
    os.kill(node.pid, signal.SIGHUP)
    wait_until(lambda: "reload refused: 3 problem(s); nothing changed" in node.log_tail(),
               message="the refused SIGHUP reload in the log")
    assert node.status()["reloads"] == 0
    assert states(node) == {"a1": "up", "a2": "up"}
    assert count_backends(node.addr(), 10) == {"a1": 5, "a2": 5}
    assert path.exists()


def test_an_address_in_use_is_refused_and_changes_nothing(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    config = one_pool_config([a1])
    node = harness.node(config)
    taken = deepcopy(config)
    taken["pools"]["app"]["servers"] = server_entries([a1, a2])
    taken["listeners"].append(
        {"name": "other", "bind": a2.address, "protocol": "http", "pool": "app"}
    )
    harness.write_config(taken)
    response = node.admin_request("POST", "/v1/reload", {})
    assert response.status == 409, response
    assert response.json()["error"].startswith(
        f"listeners.other.bind[0]: cannot bind {a2.address}: address already in use"
    )
    assert states(node) == {"a1": "up"}  # a2 was not added
    assert count_backends(node.addr(), 4) == {"a1": 4}


def test_health_drain_and_runtime_weights_survive_a_reload(harness: Harness) -> None:
    a1, a2, a3 = harness.backends("a1", "a2", "a3")
    config = one_pool_config([a1, a2, a3])
    node = harness.node(config)
    node.set_state("app", "a1", "drain")
    node.set_weight("app", "a3", 7)
    a2.kill()
    wait_until(lambda: states(node)["a2"] == "down", message="a2 down")
    events_before = node.admin_request("GET", "/v1/events").json()["last"]

    changed = deepcopy(config)
    changed["pools"]["app"]["balance"] = "leastconn"
    answer = reload(node)
    assert answer["changes"] == ["no changes"]  # the file was not changed yet
    harness.write_config(changed)
    answer = reload(node, "api")
    assert answer["changes"] == ["pool app: changed balance"]

    assert states(node) == {"a1": "drain", "a2": "down", "a3": "up"}
    assert node.server_status("app", "a3")["weight"] == 7
    assert node.server_status("app", "a2")["reason"].endswith("connect refused")
    events = node.admin_request("GET", f"/v1/events?after={events_before}").json()["events"]
    # No server changed state: kept servers are not checked again from scratch.
    assert [e for e in events if e["kind"] == "server"] == []


def test_a_new_server_enters_by_its_check_and_a_dead_one_never_gets_traffic(
    harness: Harness,
) -> None:
    a1, a2 = harness.backends("a1", "a2")
    config = one_pool_config([a1])
    node = harness.node(config)
    grown = deepcopy(config)
    dead = f"127.0.0.1:{free_port()}"
    grown["pools"]["app"]["servers"] = [
        *server_entries([a1, a2]), {"name": "gone", "address": dead},
    ]
    with Load(node.addr(), threads=2) as load:
        load.wait_for(50)
        harness.write_config(grown)
        answer = reload(node)
        load.wait_for(200)
        outcomes = load.stop()
    assert "pool app: server a2 added (up: HTTP 200)" in answer["changes"]
    assert "pool app: server gone added (down: connect refused)" in answer["changes"]
    assert outcomes.failures == []
    assert outcomes.backends["a2"] > 0 and "gone" not in outcomes.backends
    assert states(node) == {"a1": "up", "a2": "up", "gone": "down"}


def test_a_request_in_flight_on_a_removed_server_finishes(harness: Harness) -> None:
    slow = harness.backend("slow", delay=1.5)
    fast = harness.backend("fast")
    config = one_pool_config([slow])
    node = harness.node(config)
    answers: list[Any] = []
    request = threading.Thread(target=lambda: answers.append(http_request(node.addr(), "GET", "/")))
    request.start()
    wait_until(lambda: node.server_status("app", "slow")["active"] == 1, message="in flight")
    replaced = deepcopy(config)
    replaced["pools"]["app"]["servers"] = server_entries([fast])
    harness.write_config(replaced)
    answer = reload(node)
    assert "pool app: server slow removed (1 in flight finish)" in answer["changes"]
    assert count_backends(node.addr(), 3) == {"fast": 3}
    request.join(10)
    assert [(r.status, r.body) for r in answers] == [(200, b"slow")]


def test_a_moved_listener_keeps_serving_what_it_accepted_and_binds_the_new_address(
    harness: Harness,
) -> None:
    slow = harness.backend("slow", delay=1.0)
    old_port, new_port = free_port(), free_port()
    config = one_pool_config([slow])
    config["listeners"][0]["bind"] = f"127.0.0.1:{old_port}"
    node = harness.node(config)
    answers: list[Any] = []
    request = threading.Thread(
        target=lambda: answers.append(http_request(("127.0.0.1", old_port), "GET", "/"))
    )
    request.start()
    wait_until(lambda: node.server_status("app", "slow")["active"] == 1, message="in flight")
    moved = deepcopy(config)
    moved["listeners"][0]["bind"] = f"127.0.0.1:{new_port}"
    harness.write_config(moved)
    answer = reload(node)
    assert answer["changes"] == [
        f"listener web: bound 127.0.0.1:{new_port}",
        f"listener web: closed 127.0.0.1:{old_port}",
    ]
    assert refuses_connections(("127.0.0.1", old_port))
    assert http_request(("127.0.0.1", new_port), "GET", "/").body == b"slow"
    request.join(10)
    assert [(r.status, r.body) for r in answers] == [(200, b"slow")]
    listener = node.status()["listeners"][0]
    assert listener["addresses"] == [f"127.0.0.1:{new_port}"]


def test_an_open_keep_alive_connection_follows_the_new_routes(harness: Harness) -> None:
    a1, b1 = harness.backends("a1", "b1")
    config = one_pool_config([a1])
    config["pools"]["other"] = {"servers": server_entries([b1])}
    node = harness.node(config)
    rerouted = deepcopy(config)
    rerouted["listeners"][0]["routes"] = [{"match": {"path_prefix": "/b"}, "pool": "other"}]
    with HttpClient(node.addr()) as client:
        assert client.request("GET", "/b").header("X-Backend") == "a1"
        harness.write_config(rerouted)
        answer = reload(node, "sighup")
        assert answer == {}
        assert client.request("GET", "/b").header("X-Backend") == "b1"
        assert client.request("GET", "/a").header("X-Backend") == "a1"
        assert client.connects == 1  # the same client connection throughout


def test_a_removed_pool_and_a_new_tcp_listener(harness: Harness) -> None:
    a1, b1 = harness.backends("a1", "b1")
    config = one_pool_config([a1])
    config["pools"]["other"] = {"servers": server_entries([b1])}
    node = harness.node(config)
    port = free_port()
    changed = one_pool_config([a1])
    changed["listeners"].append(
        {"name": "raw", "bind": f"127.0.0.1:{port}", "protocol": "tcp", "pool": "app"}
    )
    harness.write_config(changed)
    answer = reload(node)
    assert answer["changes"] == [
        "pool other: removed", "listener raw: added (tcp, pool app)",
    ]
    assert [p["name"] for p in node.status()["pools"]] == ["app"]
    assert http_request(("127.0.0.1", port), "GET", "/").body == b"a1"
    events = node.admin_request("GET", "/v1/events").json()["events"]
    assert {"kind": "pool", "entity": "other", "old": "up", "new": "removed"}.items() <= {
        k: v for e in events if e["entity"] == "other" for k, v in e.items()
    }.items()


def test_the_events_api_lists_state_changes_with_reasons(harness: Harness) -> None:
    a1, a2 = harness.backends("a1", "a2")
    node = harness.node(one_pool_config([a1, a2]))
    start = node.admin_request("GET", "/v1/events").json()
    seen = [(e["kind"], e["entity"], e["old"], e["new"]) for e in start["events"]]
    assert ("server", "app/a1", "unchecked", "up") in seen
    assert ("listener", "web", "closed", "listening") in seen
    a2.kill()
    started = time.monotonic()

    def a2_down() -> list[dict[str, Any]]:
        after = node.admin_request("GET", f"/v1/events?after={start['last']}").json()
        return [e for e in after["events"] if e["entity"] == "app/a2" and e["new"] == "down"]

    down = wait_until(a2_down, message="a2 down event")[0]
    assert down["old"] in ("up", "falling")
    assert down["reason"] == "2 checks failed: connect refused"
    assert abs(down["time"] - time.time()) < 10 and time.monotonic() - started < 5
    bad = node.admin_request("GET", "/v1/events?after=x")
    assert bad.status == 400, bad
    assert json.loads(bad.body)["error"].startswith("expected integers")


def test_reload_needs_the_token(harness: Harness) -> None:
    (a1,) = harness.backends("a1")
    node = harness.node(one_pool_config([a1]))
    assert node.admin_request("POST", "/v1/reload", {}, token=None).status == 401
    assert node.admin_request("POST", "/v1/reload", {}, token="wrong").status == 401
    assert node.admin_request("GET", "/v1/reload").status == 405
    assert node.status()["reloads"] == 0

