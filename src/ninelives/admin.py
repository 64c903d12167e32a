"""The admin API: health, status, metrics and runtime changes of one node, over HTTP/1.1.

:class:`AdminApp` decides what to answer (a :class:`Request` in, a :class:`Response` out,
no I/O); :class:`AdminProtocol` is the thin asyncio shell around it, with httptools doing
all the parsing. Every handler is synchronous (the node's state is in memory), so
pipelined requests are answered in order simply by answering each as it completes.

Reads need no token (the API listens on loopback unless told otherwise); calls that change
state need ``Authorization: Bearer TOKEN`` and are refused outright when no token is set,
so that a node started without one can be looked at but never changed over the network.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import parse_qs, unquote

import httptools
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ninelives.address import Address
from ninelives.cluster.coordinator import CoordinatorError
from ninelives.cluster.ha import SwitchoverError
from ninelives.config import ConfigError, ReloadError
from ninelives.events import EventLog
from ninelives.listener import ListenerStats
from ninelives.metrics import NodeCollector, SloCollector
from ninelives.pool import MAX_WEIGHT, AdminState, Pool, Server
from ninelives.uptime.api import answer_slo, answer_status_page, answer_uptime

if TYPE_CHECKING:
    from ninelives.cluster.shared import SharedState
    from ninelives.config import Config
    from ninelives.uptime.recorder import UptimeRecorder
    from ninelives.uptime.watch import SloWatch

log = logging.getLogger("ninelives.admin")

MAX_BODY = 64 * 1024  # bytes; the largest legitimate body is a few dozen bytes of JSON
MAX_HEAD = 64 * 1024  # bytes of request line and headers, against header floods
# A whole request must arrive within this many seconds of the connection going idle: it
# closes idle keep-alive connections and bounds slowloris clients with the same timer.
REQUEST_DEADLINE = 10.0
# After answering a request we will not read (an error, "Connection: close"), the write side
# is shut and what the client still sends is read and dropped for up to this long: closing
# with unread bytes would make the kernel send a reset, which can destroy the answer before
# the client reads it (RFC 9112 section 9.6, "lingering close").
LINGER = 2.0

JSON = "application/json"
HTML = "text/html; charset=utf-8"


class NodeLike(Protocol):
    """What the admin API and the metrics need of a running node."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> Config: ...
    @property
    def pools(self) -> dict[str, Pool]: ...
    @property
    def listeners(self) -> Sequence[ListenerStats]: ...
    @property
    def admin_token(self) -> str | None: ...
    @property
    def started_at(self) -> float: ...
    @property
    def events(self) -> EventLog: ...
    @property
    def uptime(self) -> UptimeRecorder: ...
    @property
    def slo(self) -> SloWatch: ...
    @property
    def shared(self) -> SharedState | None: ...
    def is_ready(self) -> bool: ...
    def status(self) -> dict[str, Any]: ...
    async def reload(self) -> list[str]: ...
    async def switchover(self, to: str | None) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # percent-encoded, as sent
    authorization: str | None
    body: bytes
    peer: str  # who asked, for the log of changes


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, value: Any, *headers: tuple[str, str]) -> Response:
        return cls(status, json.dumps(value).encode(), JSON, headers)

    @classmethod
    def error(cls, status: int, message: str, *headers: tuple[str, str]) -> Response:
        return cls.json(status, {"error": message}, *headers)

    def encode(self, keep_alive: bool, with_body: bool = True) -> bytes:
        """The whole response; without the body for HEAD (Content-Length still counts it)."""
        phrase = HTTPStatus(self.status).phrase
        lines = [
            f"HTTP/1.1 {self.status} {phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        if not keep_alive:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + self.body if with_body else head


_SERVER_ACTION = re.compile(r"/v1/pools/([^/]+)/servers/([^/]+)/(state|weight)")
_ENDPOINTS = (
    "GET /healthz, /readyz, /v1/status, /v1/events, /v1/uptime, /v1/slo, /metrics, /status; "
    "POST /v1/reload, /v1/switchover, /v1/pools/POOL/servers/SERVER/state|weight"
)
Answer = Response | Awaitable[Response]


class AdminApp:
    """Answers admin requests for one node. Changes pool state; never does I/O."""

    def __init__(self, node: NodeLike) -> None:
        self.node = node
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(node))
        self.registry.register(SloCollector(lambda: node.slo.latest))
        self.reads: dict[str, Callable[[], Answer]] = {
            "/healthz": self.healthz,
            "/readyz": self.readyz,
            "/v1/status": self.status,
            "/metrics": self.metrics,
            "/status": self.status_page,
        }

    def handle(self, request: Request) -> Answer:
        path, _, query = request.path.partition("?")
        read = self.reads.get(path)
        if read is not None:
            if request.method not in ("GET", "HEAD"):
                return _not_allowed(request.method, path, "GET")
            return read()
        if path == "/v1/events":
            if request.method not in ("GET", "HEAD"):
                return _not_allowed(request.method, path, "GET")
            return self.list_events(query)
        if path == "/v1/uptime":
            if request.method not in ("GET", "HEAD"):
                return _not_allowed(request.method, path, "GET")
            return self.uptime(query)
        if path == "/v1/slo":
            if request.method not in ("GET", "HEAD"):
                return _not_allowed(request.method, path, "GET")
            return self.slo()
        if path == "/v1/reload":
            if request.method != "POST":
                return _not_allowed(request.method, path, "POST")
            return self.authorize(request.authorization) or self.reload(request.peer)
        if path == "/v1/switchover":
            if request.method != "POST":
                return _not_allowed(request.method, path, "POST")
            return self.authorize(request.authorization) or self.switchover(request)
        action = _SERVER_ACTION.fullmatch(path)
        if action is None:
            return Response.error(404, f"no endpoint {path} (endpoints: {_ENDPOINTS})")
        if request.method != "POST":
            return _not_allowed(request.method, path, "POST")
        refusal = self.authorize(request.authorization)
        if refusal is not None:
            return refusal
        pool_name, server_name, what = (unquote(part) for part in action.groups())
        pool = self.node.pools.get(pool_name)
        if pool is None:
            known = ", ".join(sorted(self.node.pools)) or "none"
            return Response.error(404, f'no pool named "{pool_name}" (pools: {known})')
        server = pool.by_name.get(server_name)
        if server is None:
            known = ", ".join(s.name for s in pool.servers) or "none"
            return Response.error(
                404, f'no server named "{server_name}" in pool "{pool_name}" (servers: {known})'
            )
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            return Response.error(400, f'expected a JSON body like {{"{what}": ...}}: {exc}')
        if not isinstance(body, dict) or what not in body:
            example = '{"state": "drain"}' if what == "state" else '{"weight": 10}'
            return Response.error(400, f"expected a JSON object like {example}, got {body!r}")
        if what == "state":
            return self.set_state(pool, server, body["state"], request.peer)
        return self.set_weight(pool, server, body["weight"], request.peer)

    def authorize(self, authorization: str | None) -> Response | None:
        """Refuse a state-changing call unless it carries the configured bearer token."""
        token = self.node.admin_token
        if token is None:
            return Response.error(403, "set admin.token in the config to allow changes")
        challenge = ("WWW-Authenticate", 'Bearer realm="ninelives"')
        if authorization is None:
            return Response.error(
                401, 'missing token: send "Authorization: Bearer TOKEN"', challenge
            )
        scheme, _, given = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return Response.error(
                401, f'expected "Authorization: Bearer TOKEN", got scheme "{scheme}"', challenge
            )
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return Response.error(401, "wrong token", challenge)
        return None

    # -- reads --------------------------------------------------------------------------------

    def healthz(self) -> Response:
        return Response.json(200, {"status": "alive", "node": self.node.name})

    def readyz(self) -> Response:
        ready = self.node.is_ready()
        return Response.json(200 if ready else 503, {"ready": ready})

    def status(self) -> Response:
        return Response.json(200, self.node.status())

    def metrics(self) -> Response:
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    async def status_page(self) -> Response:
        """The HTML status page; the 90 days of history it shows are read in a thread."""
        node = self.node
        page = await answer_status_page(node, node.uptime, node.config, node.status())
        return Response(200, page.encode(), HTML)

    def list_events(self, query: str) -> Response:
        """``?after=ID`` (events after that one; 0 = all kept) and ``?limit=N``."""
        params = parse_qs(query)
        try:
            after = int(params.get("after", ["0"])[-1])
            limit = int(params.get("limit", ["1000"])[-1])
        except ValueError as exc:
            return Response.error(400, f"expected integers for after and limit: {exc}")
        events = self.node.events.since(after, max(0, limit))
        return Response.json(200, {
            "events": [event.as_dict() for event in events],
            "last": self.node.events.last_id,
        })

    async def uptime(self, query: str) -> Response:
        """``?window=30d`` or ``?from=&to=``; computed in a worker thread."""
        node = self.node
        status, body = await answer_uptime(node, node.uptime, node.config, query)
        return Response(status, body)

    async def slo(self) -> Response:
        node = self.node
        status, body = await answer_slo(node, node.slo, node.uptime)
        return Response(status, body)

    # -- changes ------------------------------------------------------------------------------

    async def reload(self, peer: str) -> Response:
        log.info("%s asked for a reload", peer)
        try:
            changes = await self.node.reload()
        except ConfigError as exc:
            for line in exc.problems:
                log.error("reload refused: %s", line)
            return Response.json(400, {
                "error": f"the config has {len(exc.problems)} problem(s); nothing changed",
                "problems": exc.problems,
            })
        except ReloadError as exc:
            log.error("reload refused: %s", exc)
            return Response.error(409, f"{exc}; nothing changed")
        return Response.json(200, {"reloaded": True, "changes": changes})

    async def switchover(self, request: Request) -> Response:
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            return Response.error(400, f'expected a JSON body like {{"to": "lb-2"}}: {exc}')
        to = body.get("to") if isinstance(body, dict) else body
        if not isinstance(body, dict) or not (to is None or isinstance(to, str)):
            return Response.error(400, f'expected a JSON object like {{"to": "lb-2"}} or {{}}, '
                                       f"got {body!r}")
        log.info("%s asked for a switchover to %s", request.peer, to or "any other node")
        try:
            result = await self.node.switchover(to)
        except SwitchoverError as exc:
            log.error("switchover: %s", exc)
            return Response.error(exc.status, str(exc))
        return Response.json(200, result)

    def set_state(self, pool: Pool, server: Server, value: Any, peer: str) -> Answer:
        try:
            state = AdminState(value)
        except ValueError:
            allowed = ", ".join(s.value for s in AdminState)
            return Response.error(
                400, f'expected "state" to be one of {allowed}, got {json.dumps(value)}'
            )
        if self.node.shared is not None:
            return self.share(pool, server, peer, state=state)
        before = server.admin_state
        pool.set_admin_state(server.name, state)
        log.info(
            "%s set %s/%s state %s -> %s (%d of %d servers now available)",
            peer, pool.name, server.name, before.value, state.value,
            len(pool.candidates), len(pool.servers),
        )
        return Response.json(200, server.status())

    def set_weight(self, pool: Pool, server: Server, value: Any, peer: str) -> Answer:
        # bool is an int in Python; "weight": true is a mistake, not 1.
        if not isinstance(value, int) or isinstance(value, bool) or not (
            0 <= value <= MAX_WEIGHT
        ):
            return Response.error(
                400, f'expected "weight" to be an integer 0-{MAX_WEIGHT}, got {json.dumps(value)}'
            )
        if self.node.shared is not None:
            return self.share(pool, server, peer, weight=value)
        before = server.weight
        pool.set_weight(server.name, value)
        log.info(
            "%s set %s/%s weight %d -> %d", peer, pool.name, server.name, before, value
        )
        return Response.json(200, server.status())


    async def share(
        self, pool: Pool, server: Server, peer: str, state: AdminState | None = None,
        weight: int | None = None,
    ) -> Response:
        """Active-active: the change goes to the coordinator, so every node applies it; 503
        (nothing changed on any node) when the coordinator cannot be written."""
        shared = self.node.shared
        assert shared is not None
        what = f"state {state.value}" if state is not None else f"weight {weight}"
        try:
            await shared.change(pool.name, server.name, state, weight)
        except CoordinatorError as exc:
            log.error("%s set %s/%s %s: not shared: %s", peer, pool.name, server.name, what, exc)
            return Response.error(503, f"not changed on any node: the coordinator could not "
                                       f"be written ({exc}); try again when it answers")
        log.info("%s set %s/%s %s on every node", peer, pool.name, server.name, what)
        return Response.json(200, {**server.status(), "shared": True})


def _not_allowed(method: str, path: str, allowed: str) -> Response:
    return Response.error(
        405, f"method {method} not allowed on {path}; use {allowed}", ("Allow", allowed)
    )


class _Stop(Exception):
    """Raised from a parser callback to stop parsing: the connection is being closed."""


class AdminProtocol(asyncio.Protocol):
    """One admin connection: httptools parses, :class:`AdminApp` answers."""

    def __init__(self, app: AdminApp, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = "unknown"
        self.deadline: asyncio.TimerHandle | None = None
        self.head_size = 0
        self.url = b""
        self.authorization: str | None = None
        self.body = bytearray()
        self.closing = False
        # Answers not written yet, in request order: a reload is answered when it is done,
        # and a request pipelined behind it must not overtake it.
        self.waiting: deque[_Pending] = deque()
        self.done_reading = False  # "Connection: close" seen: the rest is not read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = str(Address(str(peer[0]), int(peer[1])))
        self.arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.deadline is not None:
            self.deadline.cancel()

    def arm_deadline(self, seconds: float = REQUEST_DEADLINE) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = self.loop.call_later(seconds, self.expire)

    def expire(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.done_reading:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if not self.closing and not self.done_reading:  # a bug in a callback
                log.exception("admin request from %s failed", self.peer)
                self.finish(Response.error(500, "internal error; see the node's log"), False)
        except httptools.HttpParserUpgrade:
            self.finish(Response.error(400, "protocol upgrades are not supported"), False)
        except httptools.HttpParserError as exc:
            self.finish(Response.error(400, f"malformed HTTP request: {exc}"), False)

    # -- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.head_size = 0
        self.url = b""
        self.authorization = None
        self.body.clear()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.check_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.check_head(len(name) + len(value))
        lname = name.lower()
        if lname == b"authorization":
            self.authorization = value.decode("latin-1")
        elif lname == b"content-length" and value.strip().isdigit():
            # llhttp validates the framing; this only refuses a declared size early, before
            # reading it. A chunked body is counted as it arrives (on_body).
            length = int(value)
            if length > MAX_BODY:
                self.reject(413, f"request body of {length} bytes is over the {MAX_BODY} limit")

    def on_body(self, body: bytes) -> None:
        self.body += body
        if len(self.body) > MAX_BODY:
            self.reject(413, f"request body is over the {MAX_BODY} byte limit")

    def on_message_complete(self) -> None:
        request = Request(
            method=self.parser.get_method().decode("latin-1"),
            path=self.url.decode("latin-1"),
            authorization=self.authorization,
            body=bytes(self.body),
            peer=self.peer,
        )
        keep_alive = bool(self.parser.should_keep_alive())
        answer = self.app.handle(request)
        if isinstance(answer, Response) and not self.waiting:
            self.finish(answer, keep_alive, request.method != "HEAD")
        else:
            pending = _Pending(keep_alive, request.method != "HEAD")
            self.waiting.append(pending)
            if isinstance(answer, Response):
                pending.response = answer
            else:
                if self.deadline is not None:
                    self.deadline.cancel()  # working on it: not the client's delay
                task = self.loop.create_task(_answer(answer))
                task.add_done_callback(lambda done: self.resolved(pending, done.result()))
        if not keep_alive:
            self.done_reading = True
            raise _Stop("the client asked to close")  # ignore anything pipelined after

    # -- replies ------------------------------------------------------------------------------

    def resolved(self, pending: _Pending, response: Response) -> None:
        pending.response = response
        while self.waiting and self.waiting[0].response is not None:
            first = self.waiting.popleft()
            assert first.response is not None
            self.finish(first.response, first.keep_alive, first.with_body)

    def check_head(self, size: int) -> None:
        self.head_size += size
        if self.head_size > MAX_HEAD:
            self.reject(431, f"request line and headers are over the {MAX_HEAD} byte limit")

    def reject(self, status: int, message: str) -> None:
        """Answer with an error, close, and stop the parser (from inside a callback)."""
        self.finish(Response.error(status, message), False)
        raise _Stop(message)

    def finish(self, response: Response, keep_alive: bool, with_body: bool = True) -> None:
        if self.closing or self.transport is None:
            return
        self.transport.write(response.encode(keep_alive, with_body))
        if keep_alive:
            self.arm_deadline()
            return
        self.closing = True
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client sees the end, then closes its side
            self.arm_deadline(LINGER)
        else:
            self.transport.close()


@dataclass(slots=True)
class _Pending:
    keep_alive: bool
    with_body: bool
    response: Response | None = None


async def _answer(work: Awaitable[Response]) -> Response:
    try:
        return await work
    except Exception:
        log.exception("admin request failed")
        return Response.error(500, "internal error; see the node's log")


async def start_admin(node: NodeLike, address: Address) -> asyncio.Server:
    """Serve the admin API for ``node`` on ``address`` (port 0 picks a free port)."""
    loop = asyncio.get_running_loop()
    app = AdminApp(node)
    return await loop.create_server(lambda: AdminProtocol(app, loop), address.host, address.port)
