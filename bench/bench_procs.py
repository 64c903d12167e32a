"""The processes of the proxy benchmark: start each in its own session, wait
for it to become ready, stop the whole tree by process group."""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

WANTED_NOFILE = 65536
STARTUP_DEADLINE_S = 20.0
STOP_DEADLINE_S = 5.0


class StartupError(RuntimeError):
    """A process of the benchmark did not start or did not become ready."""


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

    def kill(self, proc: Proc) -> None:
        """SIGKILL the process's whole group at once (a crash of all of it, not a shutdown)."""
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=STOP_DEADLINE_S)

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


def install_missing(packages: Mapping[str, str]) -> None:
    """apt-get install the Debian package of every command (command -> package) not on PATH."""
    missing = sorted({pkg for command, pkg in packages.items() if shutil.which(command) is None})
    if not missing:
        return
    print(f"installing {' '.join(missing)}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", *missing]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


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
