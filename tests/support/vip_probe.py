"""A client that asks an address again and again and prints what each attempt got.

``python -m tests.support.vip_probe --host 10.77.0.100 --port 8080`` (run inside the client's
network namespace). Prints ``probe ready``, then one line per attempt:
``<CLOCK_MONOTONIC seconds> ok <X-Backend>`` or ``<seconds> fail <why>``. Every attempt is
a new connection with a short timeout, as a client that retries its connection would do;
the clock is the machine's monotonic clock, which every network namespace shares, so the
test can compare it with the instant it killed a node.

With ``--retry-connect S`` a request whose connection could not be made (refused, timed
out, no route) is tried again on a new connection for up to S seconds, as a client with
connection retry does; the line then counts the connects (``ok b1 connects=3``). Only a
request that failed after its connection was made, or that found no connection within S
seconds, is a ``fail``. With ``--retry-reset`` as well, a request whose connection was
reset before any byte of an answer came is sent once more on a new connection, as a client
that retries an idempotent request does (urllib3's read retries); the line then says
``resets=1``. The probe stops by itself after ``--stop-after`` seconds.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time


def attempt(host: str, port: int, timeout: float, retry_connect: float = 0.0,
            pause: float = 0.01, answer_timeout: float | None = None,
            retry_reset: bool = False) -> str:
    """One request on a new connection; its connect retried for ``retry_connect`` seconds,
    ``pause`` apart; ``answer_timeout`` (default ``timeout``) for the answer once
    connected; with ``retry_reset``, sent once more after a reset before any answer."""
    give_up = time.monotonic() + retry_connect
    connects = resets = 0
    while True:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        connects += 1
        try:
            try:
                conn.connect()
            except OSError as exc:
                if time.monotonic() < give_up:
                    time.sleep(pause)
                    continue
                return f"fail connect {type(exc).__name__}"
            if answer_timeout is not None and conn.sock is not None:
                conn.sock.settimeout(answer_timeout)
            outcome = request(conn)
            if outcome == RESET_BEFORE_ANSWER and retry_reset and not resets:
                resets += 1
                continue
            return (outcome + (f" connects={connects}" if retry_connect else "")
                    + (f" resets={resets}" if resets else ""))
        finally:
            conn.close()


RESET_BEFORE_ANSWER = "fail ConnectionResetError before any answer"


def request(conn: http.client.HTTPConnection) -> str:
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
    except ConnectionResetError:
        return RESET_BEFORE_ANSWER
    except (OSError, http.client.HTTPException) as exc:
        return f"fail {type(exc).__name__}"
    try:
        response.read()
        if response.status != 200:
            return f"fail HTTP {response.status}"
        return f"ok {response.getheader('X-Backend') or '?'}"
    except (OSError, http.client.HTTPException) as exc:
        return f"fail {type(exc).__name__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=0.1, help="seconds per attempt")
    parser.add_argument("--pause", type=float, default=0.01, help="seconds between attempts")
    parser.add_argument("--retry-connect", type=float, default=0.0,
                        help="seconds to retry a connection that could not be made")
    parser.add_argument("--answer-timeout", type=float, default=None,
                        help="seconds to wait for the answer once connected (default: --timeout)")
    parser.add_argument("--retry-reset", action="store_true",
                        help="send a request reset before any answer once more")
    parser.add_argument("--stop-after", type=float, default=600.0, help="seconds to run")
    args = parser.parse_args()
    print("probe ready", flush=True)
    stop_at = time.monotonic() + args.stop_after
    while time.monotonic() < stop_at:
        outcome = attempt(args.host, args.port, args.timeout, args.retry_connect, args.pause,
                          args.answer_timeout, args.retry_reset)
        sys.stdout.write(f"{time.monotonic():.4f} {outcome}\n")
        sys.stdout.flush()
        time.sleep(args.pause)


if __name__ == "__main__":
    main()
