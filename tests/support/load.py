"""Steady GET load through a node from client threads, recording every outcome.

Half the threads keep one connection alive, half open a new connection per request, so a
test sees both what open keep-alive connections and what new connections meet. Every
loop is bounded by a request count and a deadline and stops by itself; ``stop()`` ends it
sooner.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.support.node import Addr

MAX_REQUESTS = 200_000  # per thread
MAX_SECONDS = 120.0


@dataclass
class Outcomes:
    ok: int = 0
    failures: list[str] = field(default_factory=list)  # what went wrong, one per failure
    backends: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        with self.lock:
            return self.ok + len(self.failures)


class Load:
    """``with Load(addr) as load: ...``: GET ``path`` from ``threads`` clients until stopped."""

    def __init__(self, addr: Addr, threads: int = 4, path: str = "/") -> None:
        self.addr = addr
        self.path = path
        self.outcomes = Outcomes()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i % 2 == 0,), daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Outcomes:
        self.stopping.set()
        for thread in self.threads:
            thread.join(15)
        return self.outcomes

    def _run(self, keep_alive: bool) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        conn: http.client.HTTPConnection | None = None
        for _ in range(MAX_REQUESTS):
            if self.stopping.is_set() or time.monotonic() > deadline:
                break
            if conn is None:
                conn = http.client.HTTPConnection(*self.addr, timeout=10)
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                outcome = None if response.status < 500 else f"HTTP {response.status}"
                backend = response.getheader("X-Backend") or "?"
                if not keep_alive or response.getheader("Connection") == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                outcome, backend = f"{type(exc).__name__}: {exc}", ""
                conn.close()
                conn = None
            with self.outcomes.lock:
                if outcome is None:
                    self.outcomes.ok += 1
                    self.outcomes.backends[backend] += 1
                else:
                    self.outcomes.failures.append(outcome)
        if conn is not None:
            conn.close()

    def wait_for(self, more: int, timeout: float = 10.0) -> None:
        """Block until ``more`` further requests have completed (or fail after timeout)."""
        target = self.outcomes.total + more
        deadline = time.monotonic() + timeout
        while self.outcomes.total < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"load made no progress: {self.outcomes.total}/{target}")
            self.stopping.wait(0.01)
