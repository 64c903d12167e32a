"""Load with wrk: one run against a port, and its output parsed into a WrkRun."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass


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
