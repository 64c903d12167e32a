"""Timeouts checked by a periodic sweep rather than a timer per request or connection:
overdue responses (every tick) and idle connections.

``timeouts.idle`` of a pool applies to (a) a client keep-alive connection with no
request in flight, (b) a pooled keep-alive connection to a server that nobody used for
that long, and (c) a response whose server went silent mid-body: the client connection
is aborted then, so that it does not wait forever for the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

from ninelives.http.context import HttpContext
from ninelives.pool import Server


def close_idle_clients(ctx: HttpContext, now: float) -> int:
    """Close or abort the client connections of ``ctx`` idle past the limit; count them."""
    limit = ctx.pool.config.timeouts.idle
    closed = 0
    for conn in list(ctx.connections):
        if conn.tunnel is not None:
            continue  # a tunnel (WebSocket) belongs to its two ends
        ex = conn.current
        if ex is not None or conn.pos != conn.swept_pos:
            conn.swept_pos = conn.pos
            conn.quiet_since = now  # busy, or read something since the last sweep
        elif now - conn.quiet_since > limit:
            conn.close()
            closed += 1
        if ex is None:
            continue
        upstream = ex.upstream
        if upstream is None or not ex.responded or upstream.reads_paused:
            continue
        if upstream.reads != upstream.swept_reads:
            upstream.swept_reads = upstream.reads
            upstream.quiet_since = now
        elif now - upstream.quiet_since > limit:
            # The server went silent mid-response (not paused by a slow client).
            upstream.abandon()
            conn.transport.abort()
            closed += 1
    return closed


def close_idle_upstreams(servers: Iterable[Server], limit: float, now: float) -> int:
    """Close pooled server connections unused for more than ``limit`` seconds; count them."""
    closed = 0
    for server in servers:
        stale = [up for up in server.idle if now - up.idle_since > limit]
        for upstream in stale:
            server.idle.remove(upstream)
            upstream.closed = True
            upstream.transport.close()
            closed += 1
    return closed


def expire_responses(servers: Iterable[Server], now: float) -> int:
    """Answer 504 for every request to ``servers`` whose response head is overdue.

    Only connections to these servers are looked at (a few, not every request ever sent).
    Returns how many timed out.
    """
    overdue = [
        up.ex for server in servers for up in server.conns
        if up.ex is not None and 0.0 < up.ex.deadline <= now
    ]
    for ex in overdue:
        ex.deadline = 0.0
        upstream = ex.upstream
        if upstream is not None and upstream.down is not None:
            upstream.down.on_response_timeout(ex)
    return len(overdue)
