"""The interval rows of one transaction of the uptime store's writer, written at once.

Recording a transition ends the entity's open interval and opens the next. Done one
statement at a time, that is an UPDATE and an INSERT per transition, each a Python call
into sqlite3: when the writer was a thread of the node, sharing the GIL with the event
loop, at 10,000 transitions a second that cost the data plane more than half of its
throughput; in the writer process it is still CPU taken from a 2-core machine. Here a
transition only changes Python lists; at the end of the transaction the new rows go in
with multi-row INSERTs and the ends of rows from earlier transactions with multi-row
UPDATEs, up to :data:`MAX_ROWS` rows a statement. Not ``executemany``: sqlite3 releases
the GIL around every row's step and takes it back after each; one statement for many rows
asks once. Row ids are given here, from the largest one in the table, so a row can be
ended in the same batch that opened it without asking the database: under a burst most
rows are inserted already closed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import chain
from typing import TypeVar

Row = list[object]  # [id, entity, state, started, ended, reason]
# Rows per statement, a power of two: statements are cut in powers of two (at most eight
# distinct texts each, which stay in sqlite3's statement cache), and 128 rows of six
# values stay under the 999 variables older SQLite versions allow.
MAX_ROWS = 128
T = TypeVar("T")


@dataclass(slots=True)
class IntervalWrites:
    next_id: int = 1
    new: dict[int, Row] = field(default_factory=dict)  # rows opened in this transaction
    ends: dict[int, float] = field(default_factory=dict)  # earlier rows ended in it

    @classmethod
    def after(cls, conn: sqlite3.Connection) -> IntervalWrites:
        """Ready to write after the rows already in the table."""
        last = conn.execute("SELECT coalesce(max(id), 0) FROM interval").fetchone()[0]
        return cls(int(last) + 1)

    def open(self, entity: int, state: str, started: float, reason: str) -> int:
        row = self.next_id
        self.next_id += 1
        self.new[row] = [row, entity, state, started, None, reason]
        return row

    def end(self, row: int, ended: float) -> None:
        opened = self.new.get(row)
        if opened is None:
            self.ends[row] = ended
        else:
            opened[4] = ended

    def write(self, conn: sqlite3.Connection) -> None:
        """Apply everything inside the caller's transaction, then start afresh."""
        for rows in chunks(list(self.new.values())):
            conn.execute(insert_sql(len(rows)), tuple(chain.from_iterable(rows)))
        for ends in chunks(list(self.ends.items())):
            conn.execute(update_sql(len(ends)), tuple(chain.from_iterable(ends)))
        self.new, self.ends = {}, {}


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
def insert_sql(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * rows)
    return f"INSERT INTO interval (id, entity, state, started, ended, reason) VALUES {values}"


@cache
def update_sql(rows: int) -> str:
    values = ", ".join(["(?, ?)"] * rows)
    return (f"WITH ends (id, ended) AS (VALUES {values}) UPDATE interval"
            " SET ended = (SELECT ended FROM ends WHERE ends.id = interval.id)"
            " WHERE id IN (SELECT id FROM ends)")
