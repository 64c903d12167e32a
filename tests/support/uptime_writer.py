"""A process that records into an uptime store as fast as it can and prints every commit
(``committed N``), after a first line ``ready writer PID`` (its store's writer process):
the kill -9 test kills it in the middle of writing.

Item ``n`` (from 1) is a request sample of one 2xx for ``app/r{ROUND}`` when ``n`` is a
multiple of 10, else an event whose reason is ``r{ROUND} event {n}``, so the test can tell
from N which items must be in the database.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ninelives.events import Event
from ninelives.uptime.store import UptimeStore

PACE = 0.001  # seconds of pause now and then: bursts, then quieter moments


def main() -> None:
    path, round_ = Path(sys.argv[1]), sys.argv[2]

    def committed(count: int) -> None:
        sys.stdout.write(f"committed {count}\n")
        sys.stdout.flush()

    # No gap between commits: many transactions of every size for the kills to land in.
    store = UptimeStore(path, on_commit=committed, commit_gap=0.0)
    store.open("writer")
    sys.stdout.write(f"ready writer {store.writer_pid}\n")
    sys.stdout.flush()
    n = 0
    while True:
        n += 1
        if n % 10 == 0:
            store.add_counts(time.time(), [("server", f"app/r{round_}", (0, 0, 1, 0, 0, 0))])
        else:
            state = "up" if n % 2 else "down"
            store.record(Event(n, time.time(), "server", f"app/s{n % 7}", "?", state,
                               f"r{round_} event {n}"))
        # Mostly a busy node (up to 20,000 items a second), with bursts that make the
        # writer commit large batches, so kills land in small and large transactions.
        if n % 20 == 0 and n % 3000 > 1000:
            time.sleep(PACE)


if __name__ == "__main__":
    main()
