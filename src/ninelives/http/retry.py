"""The retry policy of a pool: whether a request that a server could not answer may be
sent to another one, and which; and keeping request bodies for the replay.

The mechanics (dropping the old connection, dispatching again) are the
:class:`ninelives.http.downstream.Downstream`'s; this module decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ninelives.http.exchange import Exchange
    from ninelives.pool import Server

DEFAULT_MAX_BODY = 64 * 1024  # request body kept for a retry when no pool is chosen yet


def retry_target(ex: Exchange, server: Server, cause: str) -> Server | None:
    """The server to send ``ex`` to after ``server`` failed it with ``cause``
    (``connect-failure``, ``timeout``, ``reset`` or a status like ``"503"``), or None.

    Never after a byte of the response reached the client; for causes other than a
    connect failure (nothing was sent), only for the pool's retry methods and a request
    whose body was kept; never to a server that failed it already. Retries for a timeout
    or a status are bounded by the retry budget: those are how an overloaded pool fails,
    and retries would add to its load. A connect failure or a reset means the server is
    gone (killed, restarted), and its requests go elsewhere whatever their number (the
    attempts still bound each one, and outlier ejection stops new ones within a few
    failures); so do the requests waiting on a server that its checks found down (a hung
    one: they are rescued all at once, and the budget would strand most of them until
    the server wakes up or the response timeout). A target found is counted
    (``pool.retries``, and ``pool.retrying`` on the request's first retry, released by
    ``Downstream.finish``).
    """
    pool = ex.pool
    if ex.responded or ex.finished or pool is None:
        return None
    retry_on = pool.retry_on
    if cause not in retry_on and not (cause[0].isdigit() and cause[0] + "xx" in retry_on):
        return None
    if cause != "connect-failure" and (ex.method not in pool.retry_methods or not ex.replayable):
        return None
    tried = ex.tried
    first = tried is None
    if len(tried or ()) + 1 >= pool.max_tries:
        if not first:
            pool.retry_outcomes["exhausted"] += 1
        return None
    budgeted = cause != "connect-failure" and cause != "reset" and server.healthy
    if first and budgeted and not pool.may_retry():
        pool.retry_outcomes["budget"] += 1
        return None
    other = pool.fallback([*(tried or ()), server])
    if other is None:
        return None
    if tried is None:
        tried = ex.tried = []
        pool.retrying += 1
    tried.append(server)
    pool.retries[cause] = pool.retries.get(cause, 0) + 1
    return other


def keep_body(ex: Exchange, data: bytes) -> None:
    """Keep request body bytes for a retry, up to the pool's ``retries.max_body``."""
    limit = ex.pool.config.retries.max_body if ex.pool is not None else DEFAULT_MAX_BODY
    ex.kept_size += len(data)
    if ex.kept_size > limit:
        ex.replayable = False  # too large to keep: never retried once sent
        ex.kept = None
    elif ex.kept is None:
        ex.kept = [data]
    else:
        ex.kept.append(data)


def replay(ex: Exchange) -> None:
    """What the next server gets after the head: the body kept so far."""
    kept = ex.kept
    if kept:
        ex.body = list(kept)
        ex.body_size = ex.kept_size
