"""Resident memory of a proxy's process tree, idle and while it holds N idle
client connections."""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench_procs import Proc

# Opening idle connections in small batches keeps the proxy's accept queue from
# overflowing: uvloop listens with a backlog of 100, and on overflow Linux drops
# the client's final ACK, so the client believes it is connected while the
# proxy has not accepted anything yet.
IDLE_BATCH = 100


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
