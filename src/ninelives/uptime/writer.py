"""The uptime store's writer: a process of its own that commits what the node sends.

    python -m ninelives.uptime.writer DATABASE RETENTION OPENED_AT IN_FD OUT_FD LOCK_FD

Started by :meth:`ninelives.uptime.store.UptimeStore.open`, with the same interpreter, after
the node has accounted for the time it was not running. Why a process: a writer thread
shares the GIL with the event loop, and every sqlite3 call lets it go and takes it back;
a take-back while the loop runs waits for a forced switch, which the loop pays. Here the
node only appends an item per transition and sends a batch at a time (see
:mod:`ninelives.uptime.wire`); the transactions, the heartbeats, the housekeeping and the
retries are done here, on the other core when there is one.

- Every frame read is committed as it comes; frames that arrived during a commit go
  together in the next (group commit). The node paces the batches (the commit gap).
- After each commit (or failed attempt) it tells the node how many items are recorded so
  far, which flushes are done, and the error, if any: what the node reports as recorded
  has been committed with ``synchronous=FULL``.
- On a database error (a full disk) the batch is kept and tried again with backoff, while
  what the node sends goes on being read.
- It never outlives the node: when its input ends (the node closed it, or was killed), it
  commits what it got (three tries at most) and exits. It ignores SIGINT, SIGTERM and SIGHUP
  (a terminal's Ctrl-C or hang-up reaches the whole process group): the node's end of the
  pipe says when to stop.
- It holds ``LOCK_FD`` (an exclusive ``flock`` the node took) until it exits, so that a node
  started again on the same database waits for the writer of the one that was killed.
- It runs at the lowest CPU priority (nice :data:`NICE`): where the cores are busy, the
  data plane's processes come first, and the writer commits larger batches less often
  (which costs it less per item) rather than take their time. Not ``SCHED_IDLE``: with
  it the data plane did no better (the median ratio of 30 pairs of phases as in
  ``bench/uptime_load_bench.py``: 0.896 with it, 0.905 without), and a writer of that
  policy all but stops on a machine whose cores are all busy while the node's queue
  grows. A writer left behind lets the node's pipe fill; the node's queue holds what
  waits.
"""

from __future__ import annotations

import gc
import marshal
import os
import signal
import sqlite3
import sys
import time
import traceback
from collections import deque
from contextlib import closing
from pathlib import Path
from typing import Any

from ninelives.uptime import schema
from ninelives.uptime.ledger import Ledger
from ninelives.uptime.wire import CLOSE, HOUSEKEEP, Frames, send

HOUSEKEEPING_EVERY = 3600.0
MAX_BATCH = 20_000  # recorded items per transaction, when frames wait (one frame may hold more)
RETRY_MAX = 30.0  # seconds between attempts while the disk refuses writes

Item = tuple[Any, ...]


class Writer:
    def __init__(self, ledger: Ledger, frames: Frames, out_fd: int, retention: float,
                 now: float) -> None:
        self.ledger = ledger
        self.frames = frames
        self.out_fd = out_fd
        self.retention = retention
        self.now = now  # the node's clock in the last frame: the heartbeat to commit
        self.recorded = 0
        self.last_error = ""
        # Frames read, not committed: (now, recorded items in it, items)
        self.backlog: deque[tuple[float, int, list[Item]]] = deque()
        self.closing = False

    def run(self) -> None:
        self.housekeeping(self.now)
        next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY
        while not self.closing:
            if not self.backlog:
                if self.frames.ended:
                    break  # the node is gone and everything it sent is committed
                self.receive(None)
                continue
            self.receive(0.0)  # what else arrived: in the same transaction
            batch = self.take()
            give_up = self.frames.ended or any(item[0] == CLOSE for item in batch)
            # Housekeeping asked for runs in order: after what came before it.
            while any(item[0] == HOUSEKEEP for item in batch):
                cut = next(n for n, item in enumerate(batch) if item[0] == HOUSEKEEP)
                self.commit(batch[:cut], give_up)
                self.housekeeping(batch[cut][1])
                batch = batch[cut + 1:]
                next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY
            self.commit(batch, give_up)
            self.closing = any(item[0] == CLOSE for item in batch)
            if time.monotonic() >= next_housekeeping:
                self.housekeeping(self.now)
                next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY

    def receive(self, timeout: float | None) -> None:
        """Read the frames that come within ``timeout`` (None: wait for one) into the
        backlog."""
        if self.frames.ended or (timeout is not None and not self.frames.readable(timeout)):
            return
        for payload in self.frames.read():
            self.backlog.append(marshal.loads(payload))

    def take(self) -> list[Item]:
        """The items of whole frames from the backlog, up to :data:`MAX_BATCH` recorded
        items (at least one frame)."""
        batch: list[Item] = []
        count = 0
        while self.backlog and (not batch or count + self.backlog[0][1] <= MAX_BATCH):
            self.now, recorded, items = self.backlog.popleft()
            count += recorded
            batch += items
        return batch

    def commit(self, batch: list[Item], give_up: bool) -> None:
        """Apply ``batch`` in one transaction; on a database error (disk full) retry with
        backoff, keeping the batch, until it commits (or, when closing, three tries)."""
        delay, tries = 0.5, 0
        while True:
            tries += 1
            try:
                applied, flushed = self.ledger.transaction(batch, self.now)
            except sqlite3.Error as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.ledger.load()
                if (give_up or self.frames.ended) and tries >= 3:
                    self.tell([], f"{exc}; {len(batch)} items not recorded")
                    return
                self.tell([], f"{exc}; retrying in {delay:.1f}s")
                self.pause(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            self.recorded += applied
            self.last_error = ""
            self.tell(flushed, "")
            return

    def pause(self, seconds: float) -> None:
        """Wait before trying again, reading what the node sends meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.frames.ended:
                time.sleep(left)
                return
            self.receive(left)

    def housekeeping(self, now: float) -> None:
        try:
            self.ledger.housekeeping(now, self.retention)
        except sqlite3.Error as exc:
            self.last_error = f"housekeeping: {exc}"
            self.tell([], f"housekeeping failed: {exc}")

    def tell(self, flushed: list[int], complaint: str) -> None:
        """Tell the node what is recorded; a node that is gone is not told."""
        if self.out_fd < 0:
            return
        try:
            send(self.out_fd, marshal.dumps((self.recorded, flushed, self.last_error, complaint)))
        except OSError:
            os.close(self.out_fd)
            self.out_fd = -1


NICE = 19
GC_THRESHOLD = 100_000  # objects made (less those freed) between two young collections


def main(argv: list[str]) -> int:
    os.nice(NICE)  # relative to the node's own
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    path, retention, opened_at = argv[0], float(argv[1]), float(argv[2])
    in_fd, out_fd, lock_fd = int(argv[3]), int(argv[4]), int(argv[5])
    frames = Frames(in_fd)
    try:
        # Closed explicitly: the last connection to close folds the WAL into the database
        # and removes it, and a connection (in a cycle with its statement cache) frozen
        # by gc.freeze() below is never collected, not even at exit.
        with closing(schema.connect(Path(path))) as conn:
            ledger = Ledger(conn)
            ledger.load()
            # What is loaded lives as long as the process: out of the garbage collector's
            # sight, so that its collections (a batch makes thousands of tuples) do not
            # go through it again and again.
            gc.freeze()
            # What a batch makes (tuples, lists, rows) holds no cycles and goes when the
            # batch is done: a young-generation collection every 700 of them (the default)
            # only looks through them, a tenth of the writer's time under a flood.
            gc.set_threshold(GC_THRESHOLD)
            Writer(ledger, frames, out_fd, retention, opened_at).run()
    except Exception:  # a bug: the node logs that the writer exited, this says why
        print("ninelives uptime writer: stopped; nothing more is recorded", file=sys.stderr)
        traceback.print_exc()
        return 1
    finally:
        os.close(lock_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
