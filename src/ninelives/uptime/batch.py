"""The interval rows of one transaction of the uptime store's writer, written at once.

Recording a transition ends the entity's open interval and opens the next. Done one
statement at a time, that is an UPDATE and an INSERT per transition, each a Python call
into sqlite3. Here a transition only changes Python objects; at the end of the
transaction the new rows go in with multi-row INSERTs, up to :data:`MAX_ROWS` rows a
statement, and the ends of rows from earlier transactions with one UPDATE each. Row ids
are given here, from the largest one in the table, so a row can be ended in the same
transaction that opened it without asking the database.

Runs: the intervals of one entity that begin and end within one transaction and within
:data:`RUN_SPAN` are one row, the first interval in its columns and the ones after it in
``later`` (see :func:`encode` and :func:`ninelives.uptime.schema.expand`). A server that
flaps 50 times between two commits is three row writes (the end of its interval from the
last commit, the run, its open interval), not 51: at 10,000 transitions a second, what
the writer spends in SQLite falls by that much, and that CPU is taken from the data plane
where cores are short. :meth:`IntervalWrites.flap` makes a whole run at once, from the
lists of one entity's transitions in a transaction (as the journal gathers them). An
open interval is always a row of its own (``later`` NULL), so what the store reads and
changes at open (:mod:`ninelives.uptime.ledger`) is one row; and a run spans two seconds
at most, so the retention and the compaction (which leaves runs as they are) are as
exact as with a row per interval, to those two seconds.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from itertools import chain
from typing import TypeVar

# Rows per statement, a power of two: statements are cut in powers of two (at most eight
# distinct texts each, which stay in sqlite3's statement cache), and 128 rows of seven
# values stay under the 999 variables older SQLite versions allow.
MAX_ROWS = 128
RUN_SPAN = 2.0  # seconds from the start of a run to its end, at most: twice the commit gap
MAX_PAIRS = 256  # distinct (state, reason) pairs in one run, at most: a code is a byte
T = TypeVar("T")
COUNT = struct.Struct("<I")
# The columns a new row gives, by its shape: NULL is left out rather than bound (sqlite3
# binds None through its adaptation, as it does bytes).
OPEN, CLOSED, RUN = range(3)
COLUMNS = (
    ("id", "entity", "state", "started", "reason"),
    ("id", "entity", "state", "started", "reason", "ended"),
    ("id", "entity", "state", "started", "reason", "ended", "later"),
)


class Opened:
    """A row opened in this transaction: one interval, or a run (when ``starts`` is not
    empty, the intervals after the first: their starts, and a code for each of their
    ``(state, reason)``, an index in ``pairs``)."""

    def __init__(self, row: int, entity: int, state: str, started: float, reason: str) -> None:
        self.row = row
        self.entity = entity
        self.state = state
        self.started = started
        self.ended: float | None = None
        self.reason = reason
        self.starts: list[float] = []
        self.codes = bytearray()
        self.pairs: dict[tuple[str, str], int] = {}

    def joins(self, then: Opened, at: float) -> bool:
        """``then`` (which follows this run) ends at ``at``: whether it goes in it."""
        return (self.ended == then.started and at - self.started <= RUN_SPAN
                and len(self.pairs) < MAX_PAIRS)

    def add(self, then: Opened, at: float) -> None:
        self.starts.append(then.started)
        pair = (then.state, then.reason)
        code = self.pairs.get(pair)
        if code is None:
            code = self.pairs[pair] = len(self.pairs)
        self.codes.append(code)
        self.ended = at

    def values(self) -> tuple[object, ...]:
        """The row's values, as :func:`insert_sql` of its :meth:`shape` takes them."""
        if self.ended is None:
            return (self.row, self.entity, self.state, self.started, self.reason)
        if not self.starts:
            return (self.row, self.entity, self.state, self.started, self.reason, self.ended)
        return (self.row, self.entity, self.state, self.started, self.reason, self.ended,
                encode(self.starts, self.codes, tuple(self.pairs)))

    def shape(self) -> int:
        """Which columns the row gives (see :data:`COLUMNS`)."""
        return OPEN if self.ended is None else CLOSED if not self.starts else RUN


def run_codes(states: list[str], reasons: list[str]
              ) -> tuple[dict[tuple[str, str], int], bytearray] | None:
    """The distinct ``(state, reason)`` of a run's intervals, each with its code, in the
    order they came, and the code of each; None if there are more than :data:`MAX_PAIRS`.
    A compiled loop of a few steps an interval: the reason is looked up as it is (a
    string keeps its hash), as each reason of a flapping server goes with one state
    (``2 checks failed`` with ``down``); a pair is made only for a reason seen with a
    second state."""
    codes: dict[tuple[str, str], int] = {}
    by_reason: dict[str, tuple[str, int]] = {}  # the state and code of a reason's first pair
    later = bytearray(len(reasons))
    for n, reason in enumerate(reasons):
        state = states[n]
        known = by_reason.get(reason)
        if known is not None and known[0] == state:
            later[n] = known[1]
            continue
        pair = (state, reason)
        code = codes.get(pair)
        if code is None:
            if len(codes) == MAX_PAIRS:
                return None
            code = codes[pair] = len(codes)
            if known is None:
                by_reason[reason] = (state, code)
        later[n] = code
    return codes, later


def encode(starts: list[float], codes: bytearray, pairs: tuple[tuple[str, str], ...]
           ) -> bytearray:
    """A run's ``later``: how many intervals follow the first; their starts (doubles,
    little-endian: exact, and not formatted as text, which costs thousands of instructions
    a number); a byte each, the index of its ``(state, reason)`` in the list of distinct
    ones that ends it, as JSON (a flapping server has two). A bytearray: sqlite3 binds it
    as it is, where ``bytes`` (and None) first go through its adaptation, which looks for
    two attributes that are not there."""
    later = bytearray(COUNT.pack(len(starts)))
    doubles = array("d", starts)
    if sys.byteorder == "big":
        doubles.byteswap()
    later += doubles.tobytes()
    later += codes
    later += _json(pairs)
    return later


@lru_cache(maxsize=1024)
def _json(pairs: tuple[tuple[str, str], ...]) -> bytes:
    return json.dumps(pairs).encode()  # the same few pairs again and again


def decode(later: bytes | bytearray) -> list[tuple[float, str, str]]:
    """What :func:`encode` made: ``(start, state, reason)`` of each interval."""
    (count,) = COUNT.unpack_from(later)
    starts = struct.unpack_from(f"<{count}d", later, 4)
    codes = later[4 + 8 * count:4 + 9 * count]
    pairs = json.loads(later[4 + 9 * count:])
    return [(at, *pairs[code]) for at, code in zip(starts, codes, strict=True)]


@dataclass(slots=True)
class IntervalWrites:
    next_id: int = 1
    new: dict[int, Opened] = field(default_factory=dict)  # rows opened in this transaction
    ends: dict[int, float] = field(default_factory=dict)  # earlier rows ended in it
    runs: dict[int, Opened] = field(default_factory=dict)  # entity -> its run in it

    @classmethod
    def after(cls, conn: sqlite3.Connection) -> IntervalWrites:
        """Ready to write after the rows already in the table."""
        last = conn.execute("SELECT coalesce(max(id), 0) FROM interval").fetchone()[0]
        return cls(int(last) + 1)

    def open(self, entity: int, state: str, started: float, reason: str) -> int:
        row = self.next_id
        self.next_id += 1
        self.new[row] = Opened(row, entity, state, started, reason)
        return row

    def end(self, row: int, ended: float) -> None:
        opened = self.new.get(row)
        if opened is None:
            self.ends[row] = ended
        else:
            opened.ended = ended

    def transition(self, entity: int, row: int | None, state: str, at: float,
                   reason: str) -> int:
        """The entity's open interval (in ``row``; None: it has none) ends at ``at`` and
        one in ``state`` begins: the row of the new open interval."""
        if row is None:
            return self.open(entity, state, at, reason)
        opened = self.new.get(row)
        if opened is None:  # a row of an earlier transaction
            self.ends[row] = at
            return self.open(entity, state, at, reason)
        if at - opened.started > RUN_SPAN:  # not a flap: a row of its own
            opened.ended = at
            return self.open(entity, state, at, reason)
        run = self.runs.get(entity)
        if run is not None and run.joins(opened, at):
            # The interval ending continues the entity's run: it joins it, and its row
            # holds the interval that begins.
            run.add(opened, at)
            opened.state, opened.started, opened.reason = state, at, reason
            return row
        opened.ended = at  # the first interval of the entity's run in this transaction
        self.runs[entity] = opened
        return self.open(entity, state, at, reason)

    def flap(self, entity: int, row: int | None, starts: list[float], states: list[str],
             reasons: list[str]) -> int | None:
        """Transitions of one entity at ``starts`` (three or more, ascending, within
        :data:`RUN_SPAN`), its open interval in ``row`` of an earlier transaction (None: it
        has none): every interval but the last goes in one run, the last is open. The row
        of the open one; None (nothing done) if they name too many distinct ``(state,
        reason)`` for a run. No Python step a transition: the codes are made in C (where
        :meth:`transition` takes thousands of instructions for each)."""
        coded = run_codes(states[1:-1], reasons[1:-1])
        if coded is None:
            return None
        if row is not None:
            self.ends[row] = starts[0]
        run = self.new[self.next_id] = Opened(self.next_id, entity, states[0], starts[0],
                                              reasons[0])
        self.next_id += 1
        run.ended = starts[-1]
        run.starts = starts[1:-1]
        run.pairs, run.codes = coded
        self.runs[entity] = run
        return self.open(entity, states[-1], starts[-1], reasons[-1])

    def write(self, conn: sqlite3.Connection) -> None:
        """Apply everything inside the caller's transaction, then start afresh."""
        by_shape: tuple[list[tuple[object, ...]], ...] = ([], [], [])
        for opened in self.new.values():
            by_shape[opened.shape()].append(opened.values())
        for shape, values in enumerate(by_shape):
            for rows in chunks(values):
                conn.execute(insert_sql(shape, len(rows)), tuple(chain.from_iterable(rows)))
        # One statement per row: the writer is a process of its own (no GIL to share), and
        # a multi-row UPDATE (a VALUES list joined to the table) looks each row up in the
        # list, which under a flood of runs (an end per flapping server per transaction)
        # cost more than the rows themselves.
        conn.executemany("UPDATE interval SET ended = ? WHERE id = ?",
                         [(ended, row) for row, ended in self.ends.items()])
        self.new, self.ends, self.runs = {}, {}, {}


def chunks(rows: Sequence[T]) -> Iterator[Sequence[T]]:
    """``rows`` in slices of :data:`MAX_ROWS`, the rest in powers of two, largest first."""
    start = 0
    size = MAX_ROWS
    while start < len(rows):
        while size > len(rows) - start:
            size //= 2
        yield rows[start:start + size]
        start += size


@cache
def insert_sql(shape: int, rows: int) -> str:
    columns = COLUMNS[shape]
    values = ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * rows)
    return f"INSERT INTO interval ({', '.join(columns)}) VALUES {values}"

