"""``GET /v1/uptime``: the query string in, a status and a JSON value out.

The report reads SQLite and computes over up to a year of history, so it runs in a worker
thread; only the snapshot of what the node serves (:func:`~ninelives.uptime.recorder.
topology`) is taken on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from ninelives.uptime.recorder import Served, UptimeRecorder, topology
from ninelives.uptime.report import KINDS, uptime_report, window_from
from ninelives.uptime.slo_report import slo_report, slo_statuses
from ninelives.uptime.status_page import DAY, DAYS, PERIODS, render_status_page, uptime_view

if TYPE_CHECKING:
    from ninelives.config import Config
    from ninelives.uptime.watch import SloWatch


async def answer_uptime(
    node: Served, recorder: UptimeRecorder, config: Config, query: str
) -> tuple[int, bytes]:
    """``?window=30d`` (or ``?from=...&to=...``) and ``?kind=server`` (repeatable): the
    status and the JSON body, encoded in the worker thread too (a year for a thousand
    servers is megabytes of JSON)."""
    params = {key: values[-1] for key, values in parse_qs(query).items()}
    now = time.time()
    try:
        start, end = window_from(params, now)
    except ValueError as exc:
        return _error(400, str(exc))
    kinds = parse_qs(query).get("kind", list(KINDS))
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        return _error(400, f'expected kind to be one of {", ".join(KINDS)}, got "{unknown[0]}"')
    store = recorder.store
    if store is None:
        return _error(503, f"the uptime history is off: {recorder.problem}")
    snapshot = topology(node)
    rules = config.uptime.rules()
    status = {"path": str(store.path), "recorded": store.recorded, "pending": store.pending,
              "error": store.last_error or None}

    def work() -> bytes:
        report = uptime_report(store, snapshot, rules, start, end, now, kinds)
        report["store"] = status
        return encode_report(report)

    try:
        return 200, await asyncio.to_thread(work)
    except sqlite3.Error as exc:
        return _error(503, f"cannot read the uptime history: {exc}")


def encode_report(report: dict[str, Any]) -> bytes:
    """The uptime report as JSON: orjson, as a year for a thousand servers is 7 MB of it,
    which took the standard library's encoder a quarter of a second, orjson a fortieth."""
    return orjson.dumps(report)


def _error(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": message}).encode()


async def answer_slo(node: Served, watch: SloWatch, recorder: UptimeRecorder) -> tuple[int, bytes]:
    """``GET /v1/slo``: every SLO measured now, with its budget, burn rates and alerts."""
    if recorder.store is None:
        return _error(503, f"the uptime history is off: {recorder.problem}")
    now = time.time()
    try:
        statuses = await watch.measure(node)
    except sqlite3.Error as exc:
        return _error(503, f"cannot read the uptime history: {exc}")
    report = slo_report(statuses, now)
    report.update(watch.status())
    return 200, json.dumps(report).encode()


async def answer_status_page(
    node: Served, recorder: UptimeRecorder, config: Config, status: dict[str, Any]
) -> str:
    """``GET /status``: the page, with the uptime of the last 90 days and the SLOs when the
    history is kept (read, measured and rendered in a worker thread)."""
    pools_state = {p.get("name"): p.get("state") for p in status.get("pools", [])}
    for listener in status.get("listeners", []):  # a listener is down with its pool
        listener["state"] = ("closed" if not listener.get("addresses") else
                             "down" if pools_state.get(listener.get("pool")) == "down"
                             else "listening")
    store = recorder.store
    if store is None:
        return render_status_page(status, problem=f"the uptime history is off: "
                                                  f"{recorder.problem}")
    snapshot = topology(node)
    listeners = dict(snapshot.listeners)
    pools = [name for name, _ in snapshot.pools]
    rules = config.uptime.rules()
    objectives = config.uptime.objectives()
    now = time.time()

    def work() -> str:
        longest = max(PERIODS[-1][1], DAYS * DAY) + DAY
        only = [("listener", name) for name in listeners] + [("pool", p) for p in pools]
        intervals = store.intervals(now - longest, now, only)
        view = uptime_view(listeners, pools, intervals, rules, now)
        slos = slo_statuses(store, objectives, listeners, rules, now)
        return render_status_page(status, view, slos)

    try:
        return await asyncio.to_thread(work)
    except sqlite3.Error as exc:
        return render_status_page(status, problem=f"cannot read the uptime history: {exc}")
