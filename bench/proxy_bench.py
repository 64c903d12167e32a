#!/usr/bin/env python3
"""Benchmark ninelives against HAProxy 2.6 in front of the same two nginx servers.

Throughput and p99 latency with wrk (HTTP listener, then TCP listener), rounds
alternating between the proxies, and resident memory with N idle client
connections. Stdlib only; run as root (it may apt-get install nginx, haproxy,
wrk). See bench/README.md for what each number means.

    python bench/proxy_bench.py [--duration 5] [--rounds 2] [--connections 50]
                                [--idle 10000] [--skip-memory] [--only haproxy]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import http.client
import json
import os
import platform
import queue
import re
import resource
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROXIES = ("haproxy", "ninelives")
PROTOCOLS = ("http", "tcp")
WANTED_NOFILE = 65536
STARTUP_DEADLINE_S = 20.0
STOP_DEADLINE_S = 5.0
WARMUP_S = 1
# Opening idle connections in small batches keeps the proxy's accept queue from
# overflowing: uvloop listens with a backlog of 100, and on overflow Linux drops
# the client's final ACK, so the client believes it is connected while the
# proxy has not accepted anything yet.
IDLE_BATCH = 100
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "latest.json"


class StartupError(RuntimeError):
    """A process of the benchmark did not start or did not become ready."""


# --------------------------------------------------------------------------- processes


@dataclass(slots=True)
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Processes:
    """Every process the benchmark starts, each in its own session so that the
    whole tree (nginx and its worker, ninelives and any worker it forks) stops
    with one signal to that process group."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], log_path: Path, stdout_pipe: bool = False) -> Proc:
        log = log_path.open("ab")
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_DEADLINE_S
        for proc in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.alive():
                print(f"{proc.name} (pid {proc.pid}) ignored SIGTERM; SIGKILL", file=sys.stderr)
            # SIGKILL the group even when the leader exited: a forked worker may remain.
            _signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=STOP_DEADLINE_S)
            if proc.popen.stdout is not None:
                proc.popen.stdout.close()
        self.procs.clear()


def _signal_group(proc: Proc, sig: signal.Signals) -> None:
    # start_new_session made the child the leader of process group == its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get_status(port: int) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_until(what: str, proc: Proc, condition: Callable[[], bool], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise StartupError(f"{proc.name} exited with {proc.popen.returncode} before {what}")
        if condition():
            return
        time.sleep(0.05)
    raise StartupError(f"{proc.name}: no {what} within {deadline_s:.0f}s")


def wait_http_ok(proc: Proc, port: int) -> None:
    wait_until(f"200 on :{port}", proc, lambda: http_get_status(port) == 200, STARTUP_DEADLINE_S)


# --------------------------------------------------------------------------- the three programs


def ensure_packages() -> None:
    missing = [pkg for pkg in ("nginx", "haproxy", "wrk") if shutil.which(pkg) is None]
    if not missing:
        return
    print(f"installing {' '.join(missing)}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", *missing]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


def start_nginx(procs: Processes, tmp: Path, ports: tuple[int, int]) -> Proc:
    prefix = tmp / "nginx"
    prefix.mkdir()
    servers = "".join(
        f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "hello from s{i}\\n"; }}
    }}"""
        for i, port in enumerate(ports, start=1)
    )
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 100000;
    keepalive_timeout 65s;
{temp_paths}{servers}
}}
"""
    )
    argv = [
        "nginx",
        "-p",
        str(prefix),
        "-e",
        str(prefix / "error.log"),
        "-c",
        str(conf),
        "-g",
        "daemon off;",
    ]
    proc = procs.start("nginx", argv, tmp / "nginx.log")
    for port in ports:
        wait_http_ok(proc, port)
    return proc


def start_haproxy(
    procs: Processes, tmp: Path, servers: tuple[int, int], nofile: int
) -> tuple[Proc, dict[str, int]]:
    ports = {"http": free_port(), "tcp": free_port()}
    server_lines = "\n".join(
        f"    server s{i} 127.0.0.1:{port} check inter 2s"
        for i, port in enumerate(servers, start=1)
    )
    cfg = tmp / "haproxy.cfg"
    # `no strict-limits`: maxconn 20000 wants 2 fds per connection (40k); where
    # the hard fd limit is lower, HAProxy would refuse to start, yet idle client
    # connections need one fd each, so it only warns.
    cfg.write_text(
        f"""global
    nbthread 1
    maxconn 20000
    ulimit-n {nofile}
    no strict-limits

defaults
    mode http
    maxconn 20000
    option http-keep-alive
    timeout connect 1s
    timeout client 60s
    timeout server 30s
    timeout check 1s

frontend web
    bind 127.0.0.1:{ports["http"]}
    default_backend app

backend app
    balance roundrobin
    http-reuse always
    option httpchk GET /
    http-check expect status 200
    default-server rise 2 fall 3
{server_lines}

frontend raw
    mode tcp
    bind 127.0.0.1:{ports["tcp"]}
    default_backend app_tcp

backend app_tcp
    mode tcp
    balance roundrobin
    option httpchk GET /
    http-check expect status 200
    default-server rise 2 fall 3
{server_lines}
"""
    )
    proc = procs.start("haproxy", ["haproxy", "-f", str(cfg), "-db"], tmp / "haproxy.log")
    for port in ports.values():
        wait_http_ok(proc, port)
    return proc, ports


def ninelives_command() -> list[str]:
    beside_python = Path(sys.executable).parent / "ninelives"
    if beside_python.exists():
        return [str(beside_python)]
    on_path = shutil.which("ninelives")
    if on_path is None:
        raise StartupError("no ninelives next to sys.executable nor on PATH")
    return [on_path]


READY_TOKEN = re.compile(r"(\S+)=(\S+):(\d+)$")


def start_ninelives(
    procs: Processes, tmp: Path, servers: tuple[int, int]
) -> tuple[Proc, dict[str, int]]:
    cfg = tmp / "ninelives.yaml"
    server_lines = "\n".join(
        f"      - {{name: s{i}, address: 127.0.0.1:{port}}}"
        for i, port in enumerate(servers, start=1)
    )
    cfg.write_text(
        f"""node: {{name: bench, state_dir: {tmp / "ninelives-state"}}}
admin: {{listen: 127.0.0.1:0}}
listeners:
  - {{name: web, bind: 127.0.0.1:0, protocol: http, pool: app}}
  - {{name: raw, bind: 127.0.0.1:0, protocol: tcp, pool: app}}
pools:
  app:
    balance: roundrobin
    health: {{http: {{path: /, expect: 200}}, interval: 2s, timeout: 1s, rise: 2, fall: 3}}
    timeouts: {{connect: 1s, response: 30s, idle: 60s}}
    servers:
{server_lines}
"""
    )
    log_path = tmp / "ninelives.log"
    proc = procs.start("ninelives", [*ninelives_command(), "run", str(cfg)], log_path, True)
    line = _read_ready_line(proc, log_path)
    bound = {m.group(1): int(m.group(3)) for m in map(READY_TOKEN.match, line.split()) if m}
    if "web" not in bound or "raw" not in bound:
        raise StartupError(f"ninelives readiness line lacks web= or raw=: {line!r}")
    ports = {"http": bound["web"], "tcp": bound["raw"]}
    for port in ports.values():
        wait_http_ok(proc, port)
    return proc, ports


def _read_ready_line(proc: Proc, log_path: Path) -> str:
    """The first stdout line, within the deadline; later stdout goes on to the log
    so that a chatty proxy never blocks on a full pipe."""
    assert proc.popen.stdout is not None
    stdout = proc.popen.stdout
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        first = True
        with log_path.open("ab") as log:
            for raw in iter(stdout.readline, b""):
                if first:
                    lines.put(raw.decode(errors="replace").strip())
                    first = False
                log.write(raw)
                log.flush()
        if first:
            lines.put(None)

    threading.Thread(target=pump, name="ninelives-stdout", daemon=True).start()
    try:
        line = lines.get(timeout=STARTUP_DEADLINE_S)
    except queue.Empty:
        wait_s = STARTUP_DEADLINE_S
        raise StartupError(f"ninelives: no readiness line within {wait_s:.0f}s") from None
    if line is None:
        proc.popen.wait(timeout=STOP_DEADLINE_S)
        code = proc.popen.returncode
        raise StartupError(f"ninelives exited with {code} before its readiness line")
    if not line.startswith("ninelives ready "):
        raise StartupError(f"ninelives: first stdout line is not a readiness line: {line!r}")
    return line


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True, slots=True)
class WrkRun:
    proxy: str
    protocol: str
    round: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    non_2xx_3xx: int

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx_3xx


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk(output: str, proxy: str, protocol: str, round_no: int) -> WrkRun:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    pct = {
        m.group(1): _to_ms(m.group(2), m.group(3))
        for m in re.finditer(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    if rps is None or total is None or "99" not in pct:
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkRun(
        proxy=proxy,
        protocol=protocol,
        round=round_no,
        requests_per_s=float(rps.group(1)),
        p50_ms=pct.get("50", float("nan")),
        p99_ms=pct["99"],
        requests=int(total.group(1)),
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        non_2xx_3xx=int(non2xx.group(1)) if non2xx else 0,
    )


def run_wrk(port: int, duration_s: int, connections: int) -> str:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--latency",
        f"http://127.0.0.1:{port}/",
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + 30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr or done.stdout}")
    return done.stdout


# --------------------------------------------------------------------------- memory


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # comm may hold spaces and parentheses; the fields after the last ')' do not.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _status_kib(pid: int, key: str, file: str = "status") -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(root: int) -> int:
    return sum(_status_kib(pid, "VmRSS") for pid in process_tree(root))


def tree_pss_kib(root: int) -> int:
    return sum(_status_kib(pid, "Pss", "smaps_rollup") for pid in process_tree(root))


def tree_fds(root: int) -> int:
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/fd"))
    return total


@dataclass(frozen=True, slots=True)
class MemoryRun:
    proxy: str
    idle_conns_wanted: int
    idle_conns_accepted: int
    rss_before_kib: int
    rss_with_conns_kib: int
    pss_before_kib: int
    pss_with_conns_kib: int
    seconds_to_accept: float

    @property
    def per_conn_kib(self) -> float:
        if self.idle_conns_accepted == 0:
            return float("nan")
        return (self.rss_with_conns_kib - self.rss_before_kib) / self.idle_conns_accepted


def wait_fds(root: int, target: int, deadline_s: float) -> int:
    deadline = time.monotonic() + deadline_s
    while True:
        fds = tree_fds(root)
        if fds >= target or time.monotonic() >= deadline:
            return fds
        time.sleep(0.02)


def wait_rss_stable(root: int, deadline_s: float = 5.0) -> int:
    """RSS once three samples 100 ms apart agree within 1%, or at the deadline."""
    deadline = time.monotonic() + deadline_s
    samples = [tree_rss_kib(root)]
    while time.monotonic() < deadline:
        time.sleep(0.1)
        samples.append(tree_rss_kib(root))
        last = samples[-3:]
        if len(last) == 3 and max(last) - min(last) <= max(last) * 0.01:
            break
    return samples[-1]


@contextlib.contextmanager
def idle_connections(port: int, count: int, proxy_root: int) -> Iterator[tuple[int, float]]:
    """Hold `count` connections that never send a byte; yields (accepted, seconds).

    Accepted is the growth of the proxy's open file descriptors: connect()
    completing only means the kernel queued the connection."""
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    base_fds = tree_fds(proxy_root)
    started = time.monotonic()
    try:
        while len(socks) < count:
            batch = min(IDLE_BATCH, count - len(socks))
            pending = 0
            for _ in range(batch):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                socks.append(sock)
                err = sock.connect_ex(("127.0.0.1", port))
                if err in (errno.EINPROGRESS, errno.EAGAIN):
                    sel.register(sock, selectors.EVENT_WRITE)
                    pending += 1
                elif err != 0:
                    raise OSError(err, f"connect to :{port}: {os.strerror(err)}")
            deadline = time.monotonic() + 5.0
            while pending and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=0.5):
                    sel.unregister(key.fileobj)
                    pending -= 1
            for key in list(sel.get_map().values()):
                sel.unregister(key.fileobj)
            wait_fds(proxy_root, base_fds + len(socks), deadline_s=3.0)
        fds = wait_fds(proxy_root, base_fds + count, deadline_s=20.0)
        accepted = max(0, min(count, fds - base_fds))
        yield accepted, time.monotonic() - started
    finally:
        sel.close()
        # Linger 0 closes with RST: no 10k client ports left in TIME_WAIT for wrk.
        linger = struct.pack("ii", 1, 0)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            sock.close()


def measure_memory(proxy: str, proc: Proc, port: int, count: int) -> MemoryRun:
    rss_before = wait_rss_stable(proc.pid)
    pss_before = tree_pss_kib(proc.pid)
    base_fds = tree_fds(proc.pid)
    with idle_connections(port, count, proc.pid) as (accepted, seconds):
        rss_with = wait_rss_stable(proc.pid)
        pss_with = tree_pss_kib(proc.pid)
    # Let the proxy notice the resets before the next measurement starts.
    wait_fds_down(proc.pid, base_fds + 5, deadline_s=10.0)
    return MemoryRun(
        proxy, count, accepted, rss_before, rss_with, pss_before, pss_with, round(seconds, 2)
    )


def wait_fds_down(root: int, target: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while tree_fds(root) > target and time.monotonic() < deadline:
        time.sleep(0.05)


def raise_nofile() -> int:
    """Raise this process's fd limit (children inherit it); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        # Raising the hard limit needs CAP_SYS_RESOURCE; containers often lack it.
        resource.setrlimit(resource.RLIMIT_NOFILE, (WANTED_NOFILE, max(hard, WANTED_NOFILE)))
        return WANTED_NOFILE
    new_soft = hard if hard == resource.RLIM_INFINITY else min(max(soft, WANTED_NOFILE), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    return int(new_soft)


# --------------------------------------------------------------------------- report


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@dataclass(slots=True)
class Results:
    settings: dict[str, object]
    runs: list[WrkRun] = field(default_factory=list)
    memory: list[MemoryRun] = field(default_factory=list)
    rss_after_load_kib: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def summary(self, proxy: str, protocol: str) -> dict[str, float] | None:
        runs = [r for r in self.runs if r.proxy == proxy and r.protocol == protocol]
        if not runs:
            return None
        rps = [r.requests_per_s for r in runs]
        return {
            "requests_per_s": mean(rps),
            "p99_ms": mean([r.p99_ms for r in runs]),
            "errors": float(sum(r.errors for r in runs)),
            # (max - min) / mean of req/s: how far to trust a ratio on this machine
            "spread_pct": 100 * (max(rps) - min(rps)) / mean(rps) if mean(rps) else 0.0,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "settings": self.settings,
            "aggregation": "mean over rounds (errors: sum)",
            "runs": [asdict(r) | {"errors": r.errors} for r in self.runs],
            "summary": {
                f"{proxy}/{protocol}": self.summary(proxy, protocol)
                for proxy in PROXIES
                for protocol in PROTOCOLS
            },
            "memory": [asdict(m) | {"per_conn_kib": m.per_conn_kib} for m in self.memory],
            "rss_after_load_kib": self.rss_after_load_kib,
            "failures": self.failures,
        }


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    return f"{value:{spec}}{suffix}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "—"
    return f"{numerator / denominator:.2f}"


def _throughput_row(results: Results, protocol: str) -> str:
    h = results.summary("haproxy", protocol) or {}
    n = results.summary("ninelives", protocol) or {}
    return (
        f"| {protocol} | {_fmt(h.get('requests_per_s'), ',.0f')} | "
        f"{_fmt(n.get('requests_per_s'), ',.0f')} | "
        f"{_ratio(n.get('requests_per_s'), h.get('requests_per_s'))} | "
        f"{_fmt(h.get('p99_ms'), '.2f', ' ms')} | {_fmt(n.get('p99_ms'), '.2f', ' ms')} | "
        f"{_fmt(h.get('errors'), '.0f')}/{_fmt(n.get('errors'), '.0f')} |"
    )


def _memory_row(memory: list[MemoryRun]) -> str:
    by_proxy = {m.proxy: m for m in memory}
    h, n = by_proxy.get("haproxy"), by_proxy.get("ninelives")
    rss_mb = [m.rss_with_conns_kib / 1024 if m else None for m in (h, n)]
    per_conn = [m.per_conn_kib if m else None for m in (h, n)]
    missing = [str(m.idle_conns_wanted - m.idle_conns_accepted) if m else "—" for m in (h, n)]
    return (
        f"| memory, {memory[0].idle_conns_wanted} idle conns | "
        f"{_fmt(rss_mb[0], '.1f', ' MB RSS')} | {_fmt(rss_mb[1], '.1f', ' MB RSS')} | "
        f"{_ratio(rss_mb[1], rss_mb[0])} | "
        f"{_fmt(per_conn[0], '.2f', ' KiB/conn')} | {_fmt(per_conn[1], '.2f', ' KiB/conn')} | "
        f"{missing[0]}/{missing[1]} not accepted |"
    )


def render(results: Results) -> str:
    out = [
        "## raw rounds",
        "",
        "| proxy | test | round | req/s | p50 | p99 | requests | socket errors | non-2xx/3xx |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.runs:
        out.append(
            f"| {r.proxy} | {r.protocol} | {r.round} | {r.requests_per_s:,.0f} | "
            f"{r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {r.requests:,} | {r.socket_errors} | "
            f"{r.non_2xx_3xx} |"
        )
    if results.memory:
        out += [
            "",
            "| proxy | idle conns accepted | RSS before | RSS with conns | "
            "PSS before | PSS with conns | KiB/conn (RSS) | seconds to accept |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in results.memory:
            out.append(
                f"| {m.proxy} | {m.idle_conns_accepted:,}/{m.idle_conns_wanted:,} | "
                f"{m.rss_before_kib / 1024:.1f} MB | {m.rss_with_conns_kib / 1024:.1f} MB | "
                f"{m.pss_before_kib / 1024:.1f} MB | {m.pss_with_conns_kib / 1024:.1f} MB | "
                f"{m.per_conn_kib:.2f} | {m.seconds_to_accept} |"
            )
    if results.rss_after_load_kib:
        after = ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in results.rss_after_load_kib.items())
        out += ["", f"RSS after the load tests: {after}"]

    out += [
        "",
        "## summary (mean of rounds; ratio = ninelives / haproxy)",
        "",
        "| test | haproxy req/s | ninelives req/s | ratio | haproxy p99 | ninelives p99 "
        "| errors (h/n) |",
        "|---|---|---|---|---|---|---|",
    ]
    for protocol in PROTOCOLS:
        out.append(_throughput_row(results, protocol))
    spreads = [
        f"{proxy} {protocol} {summary['spread_pct']:.0f}%"
        for protocol in PROTOCOLS
        for proxy in PROXIES
        if (summary := results.summary(proxy, protocol)) is not None
    ]
    if results.memory:
        out.append(_memory_row(results.memory))
    out += ["", f"round-to-round spread of req/s, (max - min) / mean: {', '.join(spreads)}"]
    load = results.settings.get("loadavg_start"), results.settings.get("loadavg_end")
    out.append(
        f"load average (1 min) at start and end: {load[0]}, {load[1]}"
        f" on {results.settings.get('cpus')} CPUs"
    )
    if results.failures:
        out += ["", "failures:", *(f"- {f}" for f in results.failures)]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per proxy and protocol")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--idle", type=int, default=10000, help="idle connections for memory")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--only", choices=PROXIES, help="benchmark one proxy (development)")
    parser.add_argument("--json", type=Path, default=RESULTS_PATH, help="where to write results")
    args = parser.parse_args(argv)
    for name in ("duration", "rounds", "connections", "idle"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _check_alive(proxies: dict[str, tuple[Proc, dict[str, int]]], results: Results) -> None:
    for name, (proc, _) in list(proxies.items()):
        if not proc.alive():
            results.failures.append(
                f"{name} exited with {proc.popen.returncode} during the run:\n{proc.log_tail()}"
            )
            del proxies[name]


def run(args: argparse.Namespace, procs: Processes, tmp: Path) -> Results:
    nofile = raise_nofile()
    idle = args.idle
    if idle > nofile - 200:
        idle = nofile - 200
        print(
            f"fd limit {nofile}: holding {idle} idle connections, not {args.idle}", file=sys.stderr
        )
    wanted = [args.only] if args.only else list(PROXIES)
    load_start = round(os.getloadavg()[0], 2)
    results = Results(
        settings={
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "wrk_threads": 1,
            "idle_conns": idle,
            "nofile": nofile,
            "proxies": wanted,
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "haproxy": subprocess.run(
                ["haproxy", "-v"], capture_output=True, text=True, check=False
            ).stdout.splitlines()[0],
            "python": sys.version.split()[0],
            "loadavg_start": load_start,
        }
    )
    if load_start > 0.5:
        print(
            f"note: load average {load_start} before starting; "
            "other work on this machine makes the numbers noisy",
            file=sys.stderr,
        )

    servers = (free_port(), free_port())
    start_nginx(procs, tmp, servers)
    proxies: dict[str, tuple[Proc, dict[str, int]]] = {}
    for name in wanted:
        try:
            if name == "haproxy":
                proxies[name] = start_haproxy(procs, tmp, servers, nofile)
            else:
                proxies[name] = start_ninelives(procs, tmp, servers)
        except StartupError as exc:
            started = next((p for p in procs.procs if p.name == name), None)
            tail = started.log_tail() if started else ""
            results.failures.append(f"{name} did not start: {exc}\n{tail}")
    for name, (_, ports) in proxies.items():
        print(f"{name}: http :{ports['http']}, tcp :{ports['tcp']}", file=sys.stderr)

    if not args.skip_memory:
        for name in wanted:
            if name in proxies:
                proc, ports = proxies[name]
                print(f"memory: {name}, {idle} idle connections", file=sys.stderr)
                results.memory.append(measure_memory(name, proc, ports["http"], idle))
        _check_alive(proxies, results)

    for protocol in PROTOCOLS:
        for name in wanted:  # warm-up, not recorded: first connections, lazy allocations
            if name in proxies:
                run_wrk(proxies[name][1][protocol], WARMUP_S, args.connections)
        for round_no in range(1, args.rounds + 1):
            for name in wanted:
                if name not in proxies:
                    continue
                port = proxies[name][1][protocol]
                output = run_wrk(port, args.duration, args.connections)
                result = parse_wrk(output, name, protocol, round_no)
                results.runs.append(result)
                print(
                    f"{protocol} round {round_no} {name}: {result.requests_per_s:,.0f} req/s, "
                    f"p99 {result.p99_ms:.2f} ms, errors {result.errors}",
                    file=sys.stderr,
                )
                _check_alive(proxies, results)
    results.settings["loadavg_end"] = round(os.getloadavg()[0], 2)
    results.rss_after_load_kib = {
        name: tree_rss_kib(proc.pid) for name, (proc, _) in proxies.items()
    }
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    ensure_packages()
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="ninelives-bench-"))
    try:
        try:
            results = run(args, procs, tmp)
        except (StartupError, RuntimeError, OSError) as exc:  # nginx down, wrk failed, ...
            print(f"error: {exc}", file=sys.stderr)
            for proc in procs.procs:
                print(f"--- {proc.name} log ---\n{proc.log_tail()}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(render(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results.to_json(), indent=2) + "\n")
    print(f"\nresults written to {args.json}", file=sys.stderr)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
