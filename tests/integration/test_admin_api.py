"""The admin API over real HTTP: an in-process server on 127.0.0.1:0 over real Pools.

The server runs on an event loop in a thread; the tests call it with urllib, http.client
and raw sockets, and read the pools directly to see that changes took effect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import uvloop
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from ninelives import __version__
from ninelives.address import Address
from ninelives.admin import start_admin
from ninelives.client import AdminClient, AdminError, parse_target, render_status
from ninelives.cluster.shared import SharedState
from ninelives.config import Config, parse_config
from ninelives.listener import ListenerStats
from ninelives.pool import AdminState, Pool
from ninelives.states import Health, Signal
from ninelives.uptime.recorder import UptimeRecorder
from ninelives.uptime.watch import SloWatch
from tests.support.unreachable import Unanswering

TOKEN = "s3cret-token"
CONFIG = """
listeners:
  - {name: web, bind: [127.0.0.1:0], pool: app}
pools:
  app:
    tiers:
      - provider: cloud-a
        servers:
          - {name: a1, address: 127.0.0.1:1, weight: 2}
          - {name: a2, address: 127.0.0.1:2}
      - provider: cloud-b
        servers:
          - {name: b1, address: 127.0.0.1:3}
  api:
    servers:
      - {name: api1, address: 127.0.0.1:4}
"""


@dataclass
class FakeNode:
    """The attributes of ninelives.node.Node the admin API reads, over real Pools."""

    config: Config
    admin_token: str | None
    name: str = "lb-1"
    started_at: float = field(default_factory=time.time)
    ready: bool = True
    pools: dict[str, Pool] = field(default_factory=dict)
    listeners: list[ListenerStats] = field(default_factory=list)
    uptime: UptimeRecorder = field(default_factory=lambda: UptimeRecorder(None, "not kept"))
    shared: SharedState | None = None  # active-active only

    def __post_init__(self) -> None:
        self.slo = SloWatch(None, lambda: self.config)
        self.pools = {
            name: Pool(name, pc, initial=Health.UP) for name, pc in self.config.pools.items()
        }
        self.listeners = [
            ListenerStats(lc.name, lc.protocol, lc.pool) for lc in self.config.listeners
        ]
        self.listeners[0].addresses.append("127.0.0.1:8080")

    def is_ready(self) -> bool:
        return self.ready

    def status(self) -> dict[str, Any]:
        return {
            "node": self.name,
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 3),
            "ready": self.is_ready(),
            "listeners": [s.status() for s in self.listeners],
            "pools": [p.status() for p in self.pools.values()],
        }


class AdminServer:
    """start_admin on an event loop in a thread; stopped by close() (also on failure)."""

    def __init__(self, node: FakeNode, loop_kind: str = "uvloop") -> None:
        self.node = node
        self.loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        started = asyncio.run_coroutine_threadsafe(
            start_admin(node, Address("127.0.0.1", 0)), self.loop
        )
        self.server = started.result(timeout=10)
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the admin event loop did not stop"
        self.loop.close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


@pytest.fixture
def node() -> FakeNode:
    return FakeNode(parse_config(CONFIG), admin_token=TOKEN)


# ninelives runs on uvloop; plain asyncio too must work (its transports differ in type).
@pytest.fixture(params=["uvloop", "asyncio"])
def admin(node: FakeNode, request: pytest.FixtureRequest) -> Iterator[AdminServer]:
    server = AdminServer(node, request.param)
    try:
        yield server
    finally:
        server.close()


def call(
    admin: AdminServer,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://{admin.address}{path}", data=data, method=method, headers=headers or {}
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            reply = Reply(response.status, _lower(response.headers.items()), response.read())
    except urllib.error.HTTPError as exc:
        reply = Reply(exc.code, _lower(exc.headers.items()), exc.read())
    assert int(reply.headers["content-length"]) == len(reply.body)
    return reply


def _lower(items: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in items}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text; fails when there is no such sample."""
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels == labels
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def raw_exchange(admin: AdminServer, data: bytes) -> bytes:
    """Send bytes, read until the server closes the connection (bounded by a timeout)."""
    with socket.create_connection(("127.0.0.1", admin.port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- reads ------------------------------------------------------------------------------------


def test_healthz(admin: AdminServer) -> None:
    reply = call(admin, "GET", "/healthz")
    assert reply.status == 200
    assert reply.json() == {"status": "alive", "node": "lb-1"}


def test_readyz_follows_the_node(admin: AdminServer, node: FakeNode) -> None:
    assert call(admin, "GET", "/readyz").json() == {"ready": True}
    node.ready = False
    reply = call(admin, "GET", "/readyz")
    assert reply.status == 503
    assert reply.json() == {"ready": False}


def test_status_needs_no_token(admin: AdminServer) -> None:
    reply = call(admin, "GET", "/v1/status")
    assert reply.status == 200
    status = reply.json()
    assert status["node"] == "lb-1"
    assert [p["name"] for p in status["pools"]] == ["app", "api"]
    app = status["pools"][0]
    assert [s["name"] for t in app["tiers"] for s in t["servers"]] == ["a1", "a2", "b1"]
    assert status["listeners"][0]["name"] == "web"


def test_metrics_endpoint(admin: AdminServer) -> None:
    reply = call(admin, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()
    assert sample(text, "ninelives_node_info", node="lb-1", version=__version__) == 1
    assert sample(text, "ninelives_server_up", pool="app", server="a1", provider="cloud-a") == 1


def test_status_page_is_plain_html(admin: AdminServer, node: FakeNode) -> None:
    node.pools["app"].servers[1].requests = 1234
    reply = call(admin, "GET", "/status")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    page = reply.body.decode()
    for name in ("web", "app", "a1", "a2", "b1", "api1", "cloud-b", "1234"):
        assert f">{name}<" in page, name
    assert "ninelives lb-1" in page
    assert "Pool api" in page
    assert "<script" not in page
    assert "src=" not in page and "href=" not in page  # nothing fetched from elsewhere


def test_head_has_length_but_no_body(admin: AdminServer) -> None:
    get_length = len(call(admin, "GET", "/healthz").body)
    conn = HTTPConnection("127.0.0.1", admin.port, timeout=5)
    try:
        conn.request("HEAD", "/healthz")
        response = conn.getresponse()
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == get_length
        assert response.read() == b""
        # The connection is still usable: no stray body bytes were sent.
        conn.request("GET", "/readyz")
        assert json.loads(conn.getresponse().read()) == {"ready": True}
    finally:
        conn.close()


# -- changes ----------------------------------------------------------------------------------


def test_drain_changes_pool_status_and_metrics(
    admin: AdminServer, node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    pool = node.pools["app"]
    assert pool.by_name["a1"] in pool.candidates
    with caplog.at_level(logging.INFO, logger="ninelives.admin"):
        reply = call(admin, "POST", "/v1/pools/app/servers/a1/state", {"state": "drain"}, TOKEN)
    assert reply.status == 200
    assert reply.json()["name"] == "a1"
    assert reply.json()["state"] == "drain"
    assert [s.name for s in pool.candidates] == ["a2"]

    status = call(admin, "GET", "/v1/status").json()
    a1 = status["pools"][0]["tiers"][0]["servers"][0]
    assert (a1["name"], a1["state"]) == ("a1", "drain")
    metrics = call(admin, "GET", "/metrics").body.decode()
    state = "ninelives_server_state"
    assert sample(metrics, state, pool="app", server="a1", state="drain") == 1
    assert sample(metrics, state, pool="app", server="a1", state="up") == 0
    assert sample(metrics, "ninelives_pool_available_servers", pool="app") == 1

    changes = [r.getMessage() for r in caplog.records if r.name == "ninelives.admin"]
    assert len(changes) == 1
    assert changes[0].startswith("127.0.0.1:")  # who asked
    assert "app/a1 state ready -> drain" in changes[0]

    back = call(admin, "POST", "/v1/pools/app/servers/a1/state", {"state": "ready"}, TOKEN)
    assert back.json()["state"] == "up"
    assert [s.name for s in pool.candidates] == ["a1", "a2"]


def test_active_active_changes_nothing_when_the_coordinator_cannot_be_written(
    admin: AdminServer, node: FakeNode, tmp_path: Path
) -> None:
    opened = asyncio.run_coroutine_threadsafe(
        Unanswering.open(tmp_path / "cluster.db", 1.0), admin.loop)
    coordinator = opened.result(timeout=10)
    node.shared = SharedState(coordinator, node.name, lambda: node.pools)
    try:
        reply = call(admin, "POST", "/v1/pools/app/servers/a1/state", {"state": "drain"}, TOKEN)
        assert reply.status == 503
        assert reply.json()["error"] == (
            "not changed on any node: the coordinator could not be written (get: no answer "
            "within 0.33s); try again when it answers")
        a1 = node.pools["app"].by_name["a1"]
        assert a1.admin_state is AdminState.READY
        weight = a1.weight
        reply = call(admin, "POST", "/v1/pools/app/servers/a1/weight", {"weight": 7}, TOKEN)
        assert reply.status == 503
        assert a1.weight == weight
    finally:
        asyncio.run_coroutine_threadsafe(coordinator.close(), admin.loop).result(timeout=10)


def test_maint_of_a_whole_tier_fails_over(admin: AdminServer, node: FakeNode) -> None:
    for server in ("a1", "a2"):
        path = f"/v1/pools/app/servers/{server}/state"
        assert call(admin, "POST", path, {"state": "maint"}, TOKEN).status == 200
    status = call(admin, "GET", "/v1/status").json()
    assert status["pools"][0]["active_tier"] == 1
    assert [s.name for s in node.pools["app"].candidates] == ["b1"]


def test_weight(admin: AdminServer, node: FakeNode) -> None:
    reply = call(admin, "POST", "/v1/pools/app/servers/a2/weight", {"weight": 7}, TOKEN)
    assert reply.status == 200
    assert reply.json()["weight"] == 7
    assert node.pools["app"].by_name["a2"].weight == 7
    zero = call(admin, "POST", "/v1/pools/app/servers/a2/weight", {"weight": 0}, TOKEN)
    assert zero.status == 200
    assert [s.name for s in node.pools["app"].candidates] == ["a1"]


@pytest.mark.parametrize("weight", [257, -1, "5", True, 1.5, None])
def test_weight_out_of_range_is_400(admin: AdminServer, node: FakeNode, weight: Any) -> None:
    reply = call(admin, "POST", "/v1/pools/app/servers/a2/weight", {"weight": weight}, TOKEN)
    assert reply.status == 400
    assert 'expected "weight" to be an integer 0-256' in reply.json()["error"]
    assert node.pools["app"].by_name["a2"].weight == 1


def test_unknown_state_is_400(admin: AdminServer, node: FakeNode) -> None:
    reply = call(admin, "POST", "/v1/pools/app/servers/a1/state", {"state": "sleep"}, TOKEN)
    assert reply.status == 400
    assert reply.json()["error"] == (
        'expected "state" to be one of ready, drain, maint, got "sleep"'
    )
    assert node.pools["app"].by_name["a1"].state == "up"


@pytest.mark.parametrize("raw", [b"{not json", b"", b'"drain"', b'{"weight": 1}'])
def test_bad_body_is_400(admin: AdminServer, raw: bytes) -> None:
    reply = call(admin, "POST", "/v1/pools/app/servers/a1/state", token=TOKEN, raw=raw)
    assert reply.status == 400
    assert reply.json()["error"].startswith("expected a JSON")
    assert '{"state"' in reply.json()["error"]  # shows what a good body looks like


# -- refusals ---------------------------------------------------------------------------------


def test_render_status_shows_servers_another_node_keeps_out_of_hashing(
    admin: AdminServer, node: FakeNode
) -> None:
    status = AdminClient(admin.address, None).status()
    status["pools"][0]["hash_excluded"] = ["a2"]  # as an active-active hash pool says
    console = Console(record=True, width=250)
    render_status(status, console)
    text = " ".join(console.export_text().split())  # the title wraps at the table's width
    assert "out of the hash table (down on another node): a2" in text, text


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": "Bearer"}],
)
def test_change_without_the_token_is_401(
    admin: AdminServer, node: FakeNode, headers: dict[str, str]
) -> None:
    reply = call(
        admin, "POST", "/v1/pools/app/servers/a1/state", {"state": "maint"}, headers=headers
    )
    assert reply.status == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert "error" in reply.json()
    assert node.pools["app"].by_name["a1"].state == "up"


def test_change_with_no_token_configured_is_403(node: FakeNode) -> None:
    node.admin_token = None
    admin = AdminServer(node)
    try:
        reply = call(
            admin, "POST", "/v1/pools/app/servers/a1/state", {"state": "maint"}, token="any"
        )
        assert reply.status == 403
        assert reply.json() == {"error": "set admin.token in the config to allow changes"}
        assert node.pools["app"].by_name["a1"].state == "up"
        assert call(admin, "GET", "/v1/status").status == 200  # reads still work
    finally:
        admin.close()


def test_unknown_pool_server_and_path_are_404(admin: AdminServer) -> None:
    pool = call(admin, "POST", "/v1/pools/nope/servers/a1/state", {"state": "drain"}, TOKEN)
    assert pool.status == 404
    assert pool.json()["error"] == 'no pool named "nope" (pools: api, app)'
    server = call(admin, "POST", "/v1/pools/app/servers/zz/weight", {"weight": 1}, TOKEN)
    assert server.status == 404
    assert server.json()["error"] == (
        'no server named "zz" in pool "app" (servers: a1, a2, b1)'
    )
    path = call(admin, "GET", "/v2/things")
    assert path.status == 404
    assert "/v2/things" in path.json()["error"]


def test_wrong_method_is_405(admin: AdminServer) -> None:
    post = call(admin, "POST", "/healthz", {"x": 1})
    assert post.status == 405
    assert post.headers["allow"] == "GET"
    get = call(admin, "GET", "/v1/pools/app/servers/a1/state")
    assert get.status == 405
    assert get.headers["allow"] == "POST"
    assert "POST" in get.json()["error"]


def test_declared_body_over_64k_is_413_without_reading_it(admin: AdminServer) -> None:
    head = (
        "POST /v1/pools/app/servers/a1/state HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: 70000\r\n\r\n"
    )
    answer = raw_exchange(admin, head.encode())  # the server must close without the body
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in answer


def test_chunked_body_over_64k_is_413(admin: AdminServer) -> None:
    chunk = b"x" * 40000
    framed = b"%x\r\n%b\r\n" % (len(chunk), chunk)
    head = (
        "POST /v1/pools/app/servers/a1/state HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    answer = raw_exchange(admin, head + framed + framed + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_headers_over_64k_are_431(admin: AdminServer) -> None:
    answer = raw_exchange(admin, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"y" * 70000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_malformed_http_is_400_and_closed(admin: AdminServer) -> None:
    answer = raw_exchange(admin, b"HELLO THERE\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1") == 1  # nothing after the bad request was answered
    body = answer.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["error"].startswith("malformed HTTP request")


def test_keep_alive_and_pipelining(admin: AdminServer) -> None:
    conn = HTTPConnection("127.0.0.1", admin.port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        conn.request("GET", "/readyz")
        second = conn.getresponse()
        assert json.loads(second.read()) == {"ready": True}
        assert conn.sock is sock  # the same TCP connection served both
    finally:
        conn.close()
    pipelined = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = raw_exchange(admin, pipelined)
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert answer.index(b'"alive"') < answer.index(b'"ready"')  # answered in order


# -- the CLI's client -------------------------------------------------------------------------


def test_client_status_and_changes(admin: AdminServer, node: FakeNode) -> None:
    client = AdminClient(admin.address, TOKEN)
    assert client.status()["node"] == "lb-1"
    assert client.set_state("app", "b1", "maint")["state"] == "maint"
    assert node.pools["app"].by_name["b1"].state == "maint"
    assert client.set_weight("app", "a1", 9)["weight"] == 9
    assert node.pools["app"].by_name["a1"].weight == 9


def test_client_errors_carry_the_server_message(admin: AdminServer) -> None:
    with pytest.raises(AdminError) as missing:
        AdminClient(admin.address, TOKEN).set_state("app", "zz", "drain")
    assert str(missing.value) == (
        'no server named "zz" in pool "app" (servers: a1, a2, b1) (HTTP 404)'
    )
    with pytest.raises(AdminError) as denied:
        AdminClient(admin.address, "wrong").set_weight("app", "a1", 3)
    assert str(denied.value) == "wrong token (HTTP 401)"


def test_client_says_when_nothing_listens() -> None:
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with pytest.raises(AdminError) as refused:
            AdminClient(f"127.0.0.1:{port}", None, timeout=2).status()
    assert str(refused.value) == (
        f"cannot reach the admin API at 127.0.0.1:{port}: connection refused "
        "(is `ninelives run` running? set --admin or NINELIVES_ADMIN)"
    )


def test_render_status(admin: AdminServer, node: FakeNode) -> None:
    node.pools["app"].check_result(node.pools["app"].by_name["a2"], Signal.FALL, "connect refused")
    console = Console(record=True, width=200)
    render_status(AdminClient(admin.address, None).status(), console)
    text = console.export_text()
    for word in ("lb-1", "web", "127.0.0.1:8080", "a1", "a2", "b1", "api1", "cloud-b",
                 "connect refused", "down", "pool app"):
        assert word in text, word


def test_render_status_shows_panic_and_slow_start(admin: AdminServer, node: FakeNode) -> None:
    pool = node.pools["app"]
    for server in pool.servers:
        pool.set_answering(server, True)
        pool.check_result(server, Signal.FALL, "2 checks failed: HTTP 503, expected 200")
    client = AdminClient(admin.address, None)
    console = Console(record=True, width=250)
    render_status(client.status(), console)
    assert "PANIC: 0 of 2 servers of tier 0 healthy, below 50%" in console.export_text()
    pool.check_result(pool.by_name["a2"], Signal.RISE, "2 checks passed: HTTP 200")  # back: ramping
    render_status(client.status(), console)
    text = console.export_text()
    assert "PANIC" not in text and "1 (10%)" in text, text


@pytest.mark.parametrize(
    ("text", "expected"), [("app/a1", ("app", "a1")), (" api/api-1 ", ("api", "api-1"))]
)
def test_parse_target(text: str, expected: tuple[str, str]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["app", "app/", "/a1", "app/a1/x", ""])
def test_parse_target_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected POOL/SERVER, like app/a1"):
        parse_target(text)
