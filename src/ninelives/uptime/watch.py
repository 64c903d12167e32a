"""The node's SLO watch: evaluates the SLOs every :data:`EVALUATE_EVERY` seconds and tells
the webhooks when an alert fires or resolves, and when an incident of a listener or pool
starts or ends. The thin shell around :mod:`ninelives.uptime.slo` (the decisions) and
:mod:`ninelives.uptime.webhooks` (the delivery).

- SLOs are read from the store in a worker thread; the event loop only compares the
  result with the alerts firing before and queues the changes. ``/metrics`` shows the
  last evaluation (a scrape reads no database).
- Incidents come from the node's event log as they happen: a listener or pool whose
  state becomes down (``down``, a pool with no server) starts one, with the reason of that
  transition as its cause; the transition out of down ends it. Servers' own outages are
  in ``GET /v1/uptime`` but not sent: a pool absorbs them, and a flapping server must not
  flood a chat channel.
- The alerts firing are kept in ``state_dir/slo-alerts.json`` (rewritten atomically when
  one fires or resolves) and read at start: after a restart an alert still burning is not
  sent again as new, and one that stopped burning while the node was down is sent as
  resolved at the first evaluation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from ninelives.state_file import write_json
from ninelives.uptime.availability import state_class
from ninelives.uptime.recorder import Served, topology
from ninelives.uptime.slo import AlertChange, AlertKey, Severity, SloStatus, alert_changes
from ninelives.uptime.slo_report import slo_statuses
from ninelives.uptime.webhooks import Webhooks

if TYPE_CHECKING:
    from ninelives.config import Config
    from ninelives.events import Event, Kind
    from ninelives.uptime.store import UptimeStore

log = logging.getLogger("ninelives.uptime.slo")

EVALUATE_EVERY = 10.0  # seconds; the finest request buckets are 10 s
INCIDENT_KINDS: tuple[Kind, ...] = ("listener", "pool")  # the events on_event is given
ALERTS_FILE = "slo-alerts.json"


class SloWatch:
    def __init__(
        self, store: UptimeStore | None, config: Callable[[], Config],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.webhooks = Webhooks(lambda: self.config().uptime.webhooks)
        self.latest: list[SloStatus] = []
        self.firing: dict[AlertKey, bool] = {}
        self.last_error = ""
        self.task: asyncio.Task[None] | None = None
        self.alerts_path: Path | None = None  # where the alerts firing are kept

    def start(self, node: Served) -> None:
        """Read the alerts that were firing when the node last ran, then evaluate every
        :data:`EVALUATE_EVERY` seconds."""
        self.alerts_path = node.config.node.state_dir / ALERTS_FILE
        self.firing = load_firing(self.alerts_path)
        if self.firing:
            log.info("SLO alerts firing when the node last ran: %s", ", ".join(
                f"{slo} {severity}" for slo, severity in sorted(self.firing)))
        self.task = asyncio.get_running_loop().create_task(self._every(node))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.webhooks.close()

    async def measure(self, node: Served) -> list[SloStatus]:
        """Every SLO now (read in a worker thread); no alert is sent. Raises sqlite3.Error."""
        config = self.config()
        objectives = config.uptime.objectives()
        if self.store is None or not objectives:
            return []
        return await asyncio.to_thread(
            slo_statuses, self.store, objectives, dict(topology(node).listeners),
            config.uptime.rules(), self.clock())

    async def evaluate(self, node: Served) -> list[SloStatus]:
        """Evaluate every SLO now and send the alerts that changed (one at a time: the
        periodic task is the only caller)."""
        statuses = await self.measure(node)
        self.firing, changes = alert_changes(self.firing, statuses, self.clock())
        if changes and self.alerts_path is not None:
            try:
                await asyncio.to_thread(write_json, self.alerts_path, firing_json(self.firing))
            except OSError as exc:  # the alerts are still sent; a restart may repeat them
                log.error("could not keep the SLO alerts in %s: %s", self.alerts_path, exc)
        by_name = {s.objective.name: s for s in statuses}
        for change in changes:
            log.warning("SLO %s: %s alert %s: %s", change.slo, change.severity,
                        "firing" if change.firing else "resolved", change.reason)
            self.webhooks.send(alert_payload(change, by_name.get(change.slo), node.name))
        self.latest = statuses  # shown once its alerts are on their way
        return statuses

    async def _every(self, node: Served) -> None:
        while True:
            try:
                await self.evaluate(node)
                self.last_error = ""
            except sqlite3.Error as exc:
                self.last_error = f"cannot read the uptime history: {exc}"
                log.error("SLOs not evaluated: %s", self.last_error)
            except Exception:  # a bug here must not stop the watch for good
                log.exception("SLOs not evaluated; going on")
            await asyncio.sleep(EVALUATE_EVERY)

    def on_event(self, event: Event) -> None:
        """An event-log subscriber: an incident of a listener or pool starts or ends."""
        if event.kind not in INCIDENT_KINDS:
            return
        before = state_class(event.kind, event.old) == "down"
        after = state_class(event.kind, event.new) == "down"
        if before == after:
            return
        self.webhooks.send({
            "type": "incident",
            "state": "started" if after else "ended",
            "kind": event.kind,
            "name": event.entity,
            "at": event.time,
            "from": event.old,
            "to": event.new,
            "reason": event.reason,
            "node": self.node_name(),
        })

    def node_name(self) -> str:
        return self.config().node.name

    def status(self) -> dict[str, Any]:
        return {"webhooks": self.webhooks.status(), "webhooks_dropped": self.webhooks.dropped,
                "error": self.last_error or None}


def firing_json(firing: Mapping[AlertKey, bool]) -> dict[str, Any]:
    return {"version": 1, "firing": [{"slo": slo, "severity": severity}
                                     for (slo, severity), on in sorted(firing.items()) if on]}


def load_firing(path: Path) -> dict[AlertKey, bool]:
    """The alerts kept as firing in ``path``; none if there is no such file. A file that
    cannot be read is logged and ignored: the alerts then fire again as new."""
    try:
        data = json.loads(path.read_text())
        return {(str(a["slo"]), _severity(a["severity"])): True for a in data["firing"]}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable SLO alert state %s: %s", path, exc)
        return {}


def _severity(value: Any) -> Severity:
    if value not in get_args(Severity):
        raise ValueError(f"unknown severity {value!r}")
    return value  # type: ignore[no-any-return]


def alert_payload(change: AlertChange, status: SloStatus | None, node: str) -> dict[str, Any]:
    """The JSON posted; ``status`` None: the SLO was removed from the config."""
    payload: dict[str, Any] = {
        "type": "alert",
        "state": "firing" if change.firing else "resolved",
        "slo": change.slo,
        "severity": change.severity,
        "at": change.at,
        "reason": change.reason,
        "node": node,
    }
    if status is not None:
        objective = status.objective
        payload.update({
            objective.entity[0]: objective.entity[1],
            "target": objective.target,
            "window_s": objective.window_s,
            "sli": status.sli.ratio,
            "budget_left_ratio": status.budget_left_ratio,
        })
    return payload
