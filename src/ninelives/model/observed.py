"""The prediction beside what was measured: components linked to a pool (``pool: app``)
against the availability, MTBF and MTTR the uptime history shows for that pool's servers.

Pure: it reads the JSON of ``GET /v1/uptime?kind=server`` (the CLI fetches it) and says
in a sentence where the difference comes from, e.g. ``observed MTTR 40m vs assumed 1h``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ninelives.model.blocks import Block, Component, walk
from ninelives.units import format_duration
from ninelives.uptime.nines import format_percent

# Fewer incidents than this and the observed MTBF and MTTR are called rough.
FEW_INCIDENTS = 5


@dataclass(frozen=True, slots=True)
class Observation:
    """One component's prediction and what its pool's servers did in the window."""

    component: str
    pool: str
    servers: int
    predicted: float
    predicted_mtbf_s: float
    predicted_mttr_s: float
    mttr_assumed: bool
    observed: float | None
    observed_mtbf_s: float | None
    observed_mttr_s: float | None
    incidents: int
    observed_s: float
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component, "pool": self.pool, "servers": self.servers,
            "predicted": self.predicted,
            "predicted_mtbf_s": (self.predicted_mtbf_s if math.isfinite(self.predicted_mtbf_s)
                                 else None),
            "predicted_mttr_s": self.predicted_mttr_s, "mttr_assumed": self.mttr_assumed,
            "observed": self.observed, "observed_mtbf_s": self.observed_mtbf_s,
            "observed_mttr_s": self.observed_mttr_s, "incidents": self.incidents,
            "observed_s": self.observed_s, "explanation": self.explanation,
        }


def linked(root: Block) -> list[Component]:
    """One component per name that has a ``pool`` (copies share their figures), with the
    figures as given: a member of a group with ``beta`` holds only its independent part,
    and a server's history measures that part and the common cause together."""
    blocks = list(walk(root))
    commons = {block.path: block.availability for block in blocks
               if isinstance(block, Component) and block.note == "common cause"}
    seen: dict[str, Component] = {}
    for block in blocks:
        if not isinstance(block, Component) or not block.pool or block.name in seen:
            continue
        if block.note == "independent part":
            common = commons[block.path.rsplit(".", 1)[0] + ".beta"]
            block = dataclasses.replace(block, availability=block.availability * common,
                                        note="")
        if block.note != "common cause":
            seen[block.name] = block
    return list(seen.values())


def compare(root: Block, report: Mapping[str, Any]) -> list[Observation]:
    """Every linked component against the servers of its pool in an uptime report."""
    servers: dict[str, list[Mapping[str, Any]]] = {}
    for entity in report.get("entities", []):
        if entity.get("kind") == "server" and entity.get("pool"):
            servers.setdefault(str(entity["pool"]), []).append(entity)
    return [_observe(component, servers.get(component.pool or "", []))
            for component in linked(root)]


def _observe(component: Component, entities: list[Mapping[str, Any]]) -> Observation:
    up = sum(float(e.get("uptime_s") or 0) for e in entities)
    down = sum(float(e.get("downtime_s") or 0) for e in entities)
    incidents = sum(int(e.get("incident_count") or 0) for e in entities)
    observed = up / (up + down) if up + down > 0 else None
    mtbf = up / incidents if incidents else None
    mttr = down / incidents if incidents else None
    made = Observation(
        component.name, component.pool or "", len(entities), component.availability,
        component.mtbf_s, component.mttr_s, component.mttr_assumed, observed, mtbf, mttr,
        incidents, up + down, "",
    )
    return dataclasses.replace(made, explanation=explain(made))


def explain(o: Observation) -> str:
    """Where the observed availability differs from the prediction, in one sentence."""
    if not o.servers:
        return f"no server of pool {o.pool} in the uptime history"
    if o.observed is None:
        return f"the servers of pool {o.pool} were not observed up or down in the window"
    seen = format_duration(round(o.observed_s))
    expected = o.observed_s / (o.predicted_mtbf_s + o.predicted_mttr_s)
    if o.incidents == 0:
        return (f"no outage in {seen} of server time, where the prediction expects "
                f"{expected:.1f}: observed {format_percent(o.observed)} vs predicted "
                f"{format_percent(o.predicted)}")
    assumed = "assumed" if o.mttr_assumed else "given"
    verdict = "better than" if o.observed > o.predicted else (
        "worse than" if o.observed < o.predicted else "as")
    parts = [f"observed {format_percent(o.observed)} is {verdict} the predicted "
             f"{format_percent(o.predicted)}"]
    assert o.observed_mtbf_s is not None and o.observed_mttr_s is not None
    parts.append(f"{o.incidents} outages where {expected:.1f} were expected "
                 f"(observed MTBF {_hours(o.observed_mtbf_s)} vs {_hours(o.predicted_mtbf_s)})")
    parts.append(f"observed MTTR {_hours(o.observed_mttr_s)} vs {assumed} "
                 f"{_hours(o.predicted_mttr_s)}")
    text = "; ".join(parts)
    if o.incidents < FEW_INCIDENTS:
        text += f" (from {o.incidents} outages: a rough figure)"
    return text


def _hours(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "never"  # a component given as 100% available
    return format_duration(round(seconds) if seconds >= 60 else round(seconds, 1))


def hours(seconds: float | None) -> str:
    """A mean time for a table: ``-`` when nothing was observed."""
    return "-" if seconds is None else _hours(seconds)
