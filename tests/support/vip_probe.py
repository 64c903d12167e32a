"""A client that asks an address again and again and prints what each attempt got.

``python -m tests.support.vip_probe --host 10.77.0.100 --port 8080`` (run inside the client's
network namespace). Prints ``probe ready``, then one line per attempt:
``<CLOCK_MONOTONIC seconds> ok <X-Backend>`` or ``<seconds> fail <why>``. Every attempt is
a new connection with a short timeout, as a client that retries its connection would do;
the clock is the machine's monotonic clock, which every network namespace shares, so the
test can compare it with the instant it killed a node.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time


def attempt(host: str, port: int, timeout: float) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            return f"fail HTTP {response.status}"
        return f"ok {response.getheader('X-Backend') or '?'}"
    except (OSError, http.client.HTTPException) as exc:
        return f"fail {type(exc).__name__}"
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=0.1, help="seconds per attempt")
    parser.add_argument("--pause", type=float, default=0.01, help="seconds between attempts")
    args = parser.parse_args()
    print("probe ready", flush=True)
    while True:
        outcome = attempt(args.host, args.port, args.timeout)
        sys.stdout.write(f"{time.monotonic():.4f} {outcome}\n")
        sys.stdout.flush()
        time.sleep(args.pause)


if __name__ == "__main__":
    main()
