"""nginx, HAProxy and ninelives as the benchmark runs them: their configs,
how each starts and when each counts as ready."""

from __future__ import annotations

import queue
import re
import shutil
import sys
import threading
from pathlib import Path

from bench_procs import (
    STARTUP_DEADLINE_S,
    STOP_DEADLINE_S,
    Proc,
    Processes,
    StartupError,
    free_port,
    install_missing,
    wait_http_ok,
)


def ensure_packages() -> None:
    install_missing({pkg: pkg for pkg in ("nginx", "haproxy", "wrk")})


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
