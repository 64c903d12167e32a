"""``GET /v1/uptime``: the query string in, a status and a JSON value out.

The report reads SQLite and computes over up to a year of history, so it runs in a worker
thread; only the snapshot of what the node serves (:func:`~ninelives.uptime.recorder.
topology`) is taken on the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ninelives.uptime.recorder import Served, UptimeRecorder, topology
from ninelives.uptime.report import KINDS, uptime_report, window_from

if TYPE_CHECKING:
    from ninelives.config import Config


async def answer_uptime(
    node: Served, recorder: UptimeRecorder, config: Config, query: str
) -> tuple[int, dict[str, Any]]:
    """``?window=30d`` (or ``?from=...&to=...``) and ``?kind=server`` (repeatable)."""
    params = {key: values[-1] for key, values in parse_qs(query).items()}
    now = time.time()
    try:
        start, end = window_from(params, now)
    except ValueError as exc:
        return 400, {"error": str(exc)}
    kinds = parse_qs(query).get("kind", list(KINDS))
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        return 400, {"error": f'expected kind to be one of {", ".join(KINDS)}, got "{unknown[0]}"'}
    store = recorder.store
    if store is None:
        return 503, {"error": f"the uptime history is off: {recorder.problem}"}
    snapshot = topology(node)
    rules = config.uptime.rules()
    try:
        report = await asyncio.to_thread(
            uptime_report, store, snapshot, rules, start, end, now, kinds
        )
    except sqlite3.Error as exc:
        return 503, {"error": f"cannot read the uptime history: {exc}"}
    report["store"] = {
        "path": str(store.path),
        "recorded": store.recorded,
        "pending": store.pending,
        "error": store.last_error or None,
    }
    return 200, report
