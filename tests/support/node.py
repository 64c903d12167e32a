"""Start real processes for integration tests: backends and ninelives nodes.

Every process is started by a :class:`Harness`, which knows its pid and its log
file, stops it by pid (SIGTERM, then SIGKILL after a deadline), and hands its
log to the test report when a test fails (see tests/conftest.py). Readiness is
read from the process's one readiness line, with a deadline; nothing sleeps a
fixed time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parents[2]
NINELIVES = Path(sys.executable).parent / "ninelives"
TOKEN = "test-token"
BACKEND_READY_TIMEOUT = 10.0
NODE_READY_TIMEOUT = 15.0
LOG_TAIL_LINES = 200

Addr = tuple[str, int]
T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, message: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {message or predicate}")
        time.sleep(interval)
        last = predicate()
    return last


def refuses_connections(addr: Addr) -> bool:
    """True once nothing listens at ``addr`` any more (a stopped listener)."""
    try:
        socket.create_connection(addr, timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def parse_addr(text: str) -> Addr:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def free_port() -> int:
    """A port that nothing listens on right now (for 'connection refused' servers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- processes ---------------------------------------------------------------------------


@dataclass
class Process:
    label: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    ready_line: str = ""
    extra_stdout: list[str] = field(default_factory=list)
    returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def read_ready_line(self, prefix: str, timeout: float) -> str:
        """Read the first stdout line with a deadline; then drain stdout in a thread."""
        stdout = self.popen.stdout
        assert stdout is not None
        fd = stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.stop()
                    raise AssertionError(
                        f"{self.label}: no readiness line within {timeout}s; stdout so far "
                        f"{buf!r}\n{self.log_tail()}"
                    )
                if sel.select(left):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        self.stop()
                        raise AssertionError(
                            f"{self.label}: exited (code {self.popen.poll()}) before its "
                            f"readiness line; stdout {buf!r}\n{self.log_tail()}"
                        )
                    buf += chunk
        line, _, rest = buf.partition(b"\n")
        self.ready_line = line.decode()
        if rest:
            self.extra_stdout.append(rest.decode(errors="replace"))
        threading.Thread(target=self._drain, args=(fd,), daemon=True).start()
        if not self.ready_line.startswith(prefix):
            self.stop()
            raise AssertionError(
                f"{self.label}: expected a line starting {prefix!r}, got {self.ready_line!r}"
            )
        return self.ready_line

    def _drain(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.extra_stdout.append(chunk.decode(errors="replace"))

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM by pid, SIGKILL after ``timeout``; return the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self.returncode = self.popen.returncode
        return self.returncode

    def kill(self) -> None:
        """SIGKILL by pid: a crash, not a shutdown."""
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)
        self.returncode = self.popen.returncode

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        tail = text.splitlines()[-lines:]
        out = "\n".join(tail)
        if self.extra_stdout:
            out += "\n[extra stdout] " + "".join(self.extra_stdout)
        return out


@dataclass
class Backend(Process):
    name: str = ""
    port: int = 0

    @property
    def addr(self) -> Addr:
        return ("127.0.0.1", self.port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(http_request(self.addr, "GET", "/admin/stats").body)
        return result

    def sick(self) -> None:
        assert http_request(self.addr, "POST", "/admin/sick").status == 200

    def well(self) -> None:
        assert http_request(self.addr, "POST", "/admin/well").status == 200

    def release(self) -> None:
        """Let a held ``/upload?hold=1`` start reading its body."""
        assert http_request(self.addr, "POST", "/admin/release").status == 200


@dataclass
class Node(Process):
    name: str = ""
    admin: Addr = ("", 0)
    listeners: dict[str, list[Addr]] = field(default_factory=dict)

    def addr(self, listener: str = "web") -> Addr:
        return self.listeners[listener][0]

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def admin_request(
        self, method: str, path: str, body: Any = None, token: str | None = TOKEN
    ) -> Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        return http_request(self.admin, method, path, headers, data)

    def status(self) -> dict[str, Any]:
        response = self.admin_request("GET", "/v1/status", token=None)
        assert response.status == 200, response
        result: dict[str, Any] = json.loads(response.body)
        return result

    def server_status(self, pool: str, server: str) -> dict[str, Any]:
        for p in self.status()["pools"]:
            if p["name"] != pool:
                continue
            for tier in p["tiers"]:
                for s in tier["servers"]:
                    if s["name"] == server:
                        found: dict[str, Any] = s
                        return found
        raise AssertionError(f"no server {pool}/{server} in /v1/status")

    def set_state(self, pool: str, server: str, state: str) -> None:
        response = self.admin_request(
            "POST", f"/v1/pools/{pool}/servers/{server}/state", {"state": state}
        )
        assert 200 <= response.status < 300, response

    def set_weight(self, pool: str, server: str, weight: int) -> None:
        response = self.admin_request(
            "POST", f"/v1/pools/{pool}/servers/{server}/weight", {"weight": weight}
        )
        assert 200 <= response.status < 300, response


def parse_ready_line(line: str) -> tuple[str, Addr, dict[str, list[Addr]]]:
    """``ninelives ready node=N admin=H:P web=H:P,H:P`` -> (node, admin, listeners)."""
    words = line.split()
    assert words[:2] == ["ninelives", "ready"], line
    fields = dict(word.split("=", 1) for word in words[2:])
    name = fields.pop("node")
    admin = parse_addr(fields.pop("admin"))
    listeners = {key: [parse_addr(a) for a in value.split(",")] for key, value in fields.items()}
    return name, admin, listeners


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Harness:
    """Starts backends and nodes for one test; stops them all by pid at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.logs = directory / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: list[Process] = []
        self._seq = 0

    def _log_path(self, label: str) -> Path:
        self._seq += 1
        return self.logs / f"{self._seq:02d}-{label}.log"

    def _spawn(self, label: str, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self._log_path(label)
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=_child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        return popen, log_path

    def spawn(
        self, label: str, argv: list[str], ready_prefix: str, timeout: float = NODE_READY_TIMEOUT
    ) -> Process:
        """Start any process; wait for its first stdout line, which must start ``ready_prefix``."""
        popen, log_path = self._spawn(label, argv)
        process = Process(label=label, popen=popen, log_path=log_path)
        self.processes.append(process)
        process.read_ready_line(ready_prefix, timeout)
        return process

    def backends(self, *names: str, delay: Mapping[str, float] | None = None) -> list[Backend]:
        """Start several backends at once (their start-up overlaps), each on a free port."""
        started: list[Backend] = []
        for name in names:
            started.append(self._start_backend(name, 0, (delay or {}).get(name, 0.0)))
        for backend in started:
            self._await_backend(backend)
        return started

    def backend(self, name: str, port: int = 0, delay: float = 0.0) -> Backend:
        backend = self._start_backend(name, port, delay)
        self._await_backend(backend)
        return backend

    def _start_backend(self, name: str, port: int, delay: float) -> Backend:
        argv = [sys.executable, "-m", "tests.support.backend", "--name", name]
        argv += ["--port", str(port), "--delay", str(delay)]
        popen, log_path = self._spawn(f"backend-{name}", argv)
        backend = Backend(label=f"backend {name}", popen=popen, log_path=log_path, name=name)
        self.processes.append(backend)
        return backend

    def _await_backend(self, backend: Backend) -> None:
        line = backend.read_ready_line("backend ready", BACKEND_READY_TIMEOUT)
        fields = dict(word.split("=", 1) for word in line.split()[2:])
        backend.port = int(fields["port"])

    def write_config(self, config: Mapping[str, Any], name: str = "lb-test") -> Path:
        full = dict(config)
        full.setdefault("node", {"name": name, "state_dir": str(self.directory / "state")})
        full.setdefault("admin", {"listen": "127.0.0.1:0", "token": TOKEN})
        path = self.directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(full, sort_keys=False))
        return path

    def node(self, config: Mapping[str, Any], name: str = "lb-test") -> Node:
        path = self.write_config(config, name)
        popen, log_path = self._spawn(f"node-{name}", [str(NINELIVES), "run", str(path)])
        node = Node(label=f"node {name} ({path})", popen=popen, log_path=log_path)
        self.processes.append(node)
        line = node.read_ready_line("ninelives ready", NODE_READY_TIMEOUT)
        node.name, node.admin, node.listeners = parse_ready_line(line)
        return node

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"log of {p.label} (pid {p.pid})", p.log_tail()) for p in self.processes]


# --- clients -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    reason: str = ""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Response({self.status} {self.reason}, {self.headers}, {self.body[:200]!r})"


def http_request(
    addr: Addr,
    method: str = "GET",
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    body: bytes | Iterable[bytes] | None = None,
    timeout: float = 10.0,
    source: str | None = None,
) -> Response:
    """One request on a fresh connection (http.client), the whole body read."""
    source_address = (source, 0) if source else None
    conn = http.client.HTTPConnection(*addr, timeout=timeout, source_address=source_address)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, list(resp.getheaders()), data, resp.reason)
    finally:
        conn.close()


class _CountingConnection(http.client.HTTPConnection):
    connects = 0

    def connect(self) -> None:
        self.connects += 1
        super().connect()


class HttpClient:
    """A keep-alive client: requests reuse one connection while the server keeps it open.

    ``connects`` counts the TCP connections opened, so a test can tell whether the
    server kept the connection alive.
    """

    def __init__(self, addr: Addr, timeout: float = 10.0, source: str | None = None) -> None:
        source_address = (source, 0) if source else None
        self.conn = _CountingConnection(*addr, timeout=timeout, source_address=source_address)

    @property
    def connects(self) -> int:
        return self.conn.connects

    def request(
        self,
        method: str = "GET",
        path: str = "/",
        headers: Mapping[str, str] | None = None,
        body: bytes | Iterable[bytes] | None = None,
        encode_chunked: bool = False,
    ) -> Response:
        self.conn.request(
            method, path, body=body, headers=dict(headers or {}), encode_chunked=encode_chunked
        )
        resp = self.conn.getresponse()
        data = resp.read()
        return Response(resp.status, list(resp.getheaders()), data, resp.reason)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def count_backends(
    addr: Addr,
    n: int,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
) -> Counter[str]:
    """Send ``n`` requests on one keep-alive connection; count answers by X-Backend."""
    seen: Counter[str] = Counter()
    with HttpClient(addr) as client:
        for _ in range(n):
            response = client.request("GET", path, headers)
            assert response.status == 200, response
            seen[response.header("X-Backend") or "?"] += 1
    return seen


class RawConn:
    """A raw socket to send arbitrary bytes and read HTTP/1.1 responses one at a time."""

    def __init__(self, addr: Addr, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"closed after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed inside a line: {self.buf!r}")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_response(self, head: bool = False) -> Response:
        """Read one response (a 1xx too); no body for HEAD, 1xx, 204 and 304."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed before a full response head: {self.buf!r}")
        head_bytes, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        version, status_text, *reason = lines[0].split(" ", 2)
        assert version.startswith("HTTP/1."), lines[0]
        status = int(status_text)
        headers = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in lines[1:])]
        response = Response(status, headers, b"", reason[0] if reason else "")
        if head or status < 200 or status in (204, 304):
            return response
        if (response.header("Transfer-Encoding") or "").lower() == "chunked":
            body = self._read_chunked()
        elif response.header("Content-Length") is not None:
            body = self._read_exact(int(response.header("Content-Length") or "0"))
        else:
            body = self.read_until_close()
        return Response(status, headers, body, response.reason)

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = int(self._read_line().split(b";")[0], 16)
            if size == 0:
                while self._read_line():
                    pass
                return bytes(body)
            body += self._read_exact(size)
            assert self._read_exact(2) == b"\r\n"

    def read_until_close(self, timeout: float = 10.0) -> bytes:
        """Everything until the peer closes; fail if it does not close within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            pass
        out, self.buf = self.buf, b""
        return out

    def is_closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the peer closes (EOF or reset) within ``timeout`` with nothing more sent."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request_bytes(
    method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b""
) -> bytes:
    """Serialise a request for RawConn; Host and Content-Length added unless given."""
    all_headers = {"Host": "test.local", **(headers or {})}
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in all_headers):
        all_headers["Content-Length"] = str(len(body))
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- memory --------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Samples a process's RSS in a thread while a transfer runs; ``peak_kib`` is the max."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = rss_kib(pid)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
            except (FileNotFoundError, AssertionError):
                return
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# --- configs -------------------------------------------------------------------------------

# Checks that tolerate a busy machine: a live server must not be seen down here.
PATIENT_HEALTH: dict[str, Any] = {
    "http": {"path": "/healthz", "expect": 200}, "interval": "500ms", "timeout": "500ms",
    "rise": 1, "fall": 2,
}

# Fast enough that a dead server is noticed within a fraction of a second.
FAST_HEALTH: dict[str, Any] = {
    "http": {"path": "/healthz", "expect": 200},
    "interval": "200ms",
    "timeout": "200ms",
    "rise": 1,
    "fall": 2,
}


def server_entries(backends: Iterable[Backend], **extra: Any) -> list[dict[str, Any]]:
    return [{"name": b.name, "address": b.address, **extra} for b in backends]


def one_pool_config(
    backends: Iterable[Backend], pool: Mapping[str, Any] | None = None, pool_name: str = "app"
) -> dict[str, Any]:
    """A listener ``web`` on a free port in front of one pool of ``backends``."""
    pool_config: dict[str, Any] = {"health": FAST_HEALTH, "servers": server_entries(backends)}
    pool_config.update(pool or {})
    return {
        "listeners": [
            {"name": "web", "bind": "127.0.0.1:0", "protocol": "http", "pool": pool_name}
        ],
        "pools": {pool_name: pool_config},
    }
