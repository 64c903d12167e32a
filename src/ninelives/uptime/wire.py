"""What the node and the uptime store's writer process say to each other over their pipes.

Node to writer, one frame per batch: ``marshal.dumps((now, count, items))``, ``now`` the
node's clock when it sent them (the heartbeat that the commit records), ``count`` the
recorded items among them (a transition each, in ``STATES``), each item a plain tuple
whose first element is its tag. Writer to node, one frame per commit (or failed attempt):
``marshal.dumps((recorded, flushed, error, complaint))``. marshal, not pickle: the items are
tuples of strings and numbers, and marshal writes and reads them in C at a few tens of
nanoseconds an item. A frame is its length (4 bytes, big-endian) and the bytes.

Items (``at``, ``time``: seconds since the epoch):

- ``(STATES, {kind: {entity: (starts, states, reasons)}})``: the transitions of servers,
  pools and listeners (:data:`INTERVAL_KINDS`) since the item before, by entity, each
  entity's in order (see :mod:`ninelives.uptime.journal`);
- ``(EVENT, time, kind, entity, old, new, reason)``: an :class:`~ninelives.events.Event`
  of another kind (a node's reload), kept as a change;
- ``(TRANSITION, kind, entity, state, reason, at)``: a state the store records itself;
- ``(SAMPLE, at, ((kind, name, counts), ...))``: requests counted since the last sample;
- ``(RETIRE, keep, kinds, at)``: entities of ``kinds`` not in ``keep`` are gone;
- ``(STOP, node, at)``: the node stops serving;
- ``(HOUSEKEEP, at)``, ``(FLUSH, id)``, ``(CLOSE,)``: retention and compaction now; tell
  when everything before it is committed; commit everything and exit.
"""

from __future__ import annotations

import os
import select
import struct

EVENT, TRANSITION, SAMPLE, RETIRE, STOP, STATES = range(6)  # recorded: in ``recorded``
HOUSEKEEP, FLUSH, CLOSE = range(6, 9)
NOT_RECORDED = frozenset({HOUSEKEEP, FLUSH, CLOSE})
# Events of these kinds are states of an entity (intervals); other events (a node's
# reloads) are kept as changes.
INTERVAL_KINDS = frozenset({"server", "pool", "listener"})
CLOSE_ITEM = (CLOSE,)

HEADER = struct.Struct("!I")
READ_SIZE = 1 << 20


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def send(fd: int, payload: bytes) -> None:
    """Write one frame (blocking). Raises OSError (BrokenPipeError: the reader is gone)."""
    data = memoryview(frame(payload))
    while data:
        data = data[os.write(fd, data):]


class Frames:
    """The frames coming from a pipe, as they complete."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.ended = False  # the writing end is closed and everything sent was read
        self._buffer = bytearray()

    def readable(self, timeout: float | None) -> bool:
        """Whether a read would not block (data, or the end), waiting up to ``timeout``."""
        return bool(select.select([self.fd], [], [], timeout)[0])

    def read(self) -> list[bytes]:
        """One read of the pipe (blocking until something comes), then the frames it
        completed."""
        chunk = os.read(self.fd, READ_SIZE)
        if not chunk:
            self.ended = True
            return []
        buffer = self._buffer
        buffer += chunk
        out = []
        start = 0
        while len(buffer) - start >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer, start)
            end = start + HEADER.size + size
            if end > len(buffer):
                break
            out.append(bytes(buffer[start + HEADER.size:end]))
            start = end
        del buffer[:start]
        return out
