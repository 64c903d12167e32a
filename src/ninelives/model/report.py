"""The model's answer as data (JSON) and for people (a rich table); pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ninelives.model.blocks import YEAR_S, Block, Component, Importance, importance, walk
from ninelives.model.observed import Observation, hours
from ninelives.model.simulate import Simulated
from ninelives.units import format_duration
from ninelives.uptime.nines import format_percent, nines


@dataclass(frozen=True, slots=True)
class Prediction:
    """The analytic answer: availability, and every block's gain if it were perfect."""

    availability: float
    blocks: tuple[Importance, ...]
    assumed_mttr: tuple[str, ...]  # components whose repair time the model assumed

    @property
    def downtime_per_year_s(self) -> float:
        return (1 - self.availability) * YEAR_S

    @property
    def nines(self) -> float | None:
        return nines(self.availability)


def predict(root: Block) -> Prediction:
    value, blocks = importance(root)
    assumed = sorted({block.name for block in walk(root)
                      if isinstance(block, Component) and block.mttr_assumed})
    return Prediction(value, tuple(blocks), tuple(assumed))


def to_json(prediction: Prediction, simulated: Simulated | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "availability": prediction.availability,
        "downtime_per_year_s": prediction.downtime_per_year_s,
        "nines": prediction.nines,
        "blocks": [
            {
                "path": block.path, "label": block.label, "kind": block.kind,
                "availability": block.availability,
                "downtime_per_year_s": (1 - block.availability) * YEAR_S,
                "gain_if_perfect": block.gain,
                "gain_per_year_s": block.gain * YEAR_S,
            }
            for block in prediction.blocks
        ],
        "assumed_mttr": list(prediction.assumed_mttr),
    }
    if simulated is not None:
        out["simulated"] = {
            "years": simulated.years,
            "availability": simulated.availability,
            "confidence": simulated.confidence,
            "low": simulated.low,
            "high": simulated.high,
            "downtime_per_year_s": simulated.downtime_per_year_s,
            "outages": simulated.outages,
            "contains_analytic": simulated.contains(prediction.availability),
        }
    return out


def _down(seconds: float) -> str:
    return format_duration(round(seconds) if seconds >= 60 else round(seconds, 3))


def render(prediction: Prediction, simulated: Simulated | None = None, top: int = 20) -> Group:
    """A headline, the blocks weakest first (at most ``top``), and the simulation."""
    count = prediction.nines
    head = Text.assemble(
        ("Predicted availability ", "bold"), (format_percent(prediction.availability), "bold"),
        f" ({'no downtime' if count is None else f'{count:.2f} nines'}), "
        f"{_down(prediction.downtime_per_year_s)} down a year",
    )
    table = Table(title="Where the downtime comes from (gain if the block never failed)",
                  title_justify="left")
    for column in ("block", "path", "availability", "down a year", "gain a year", "share"):
        table.add_column(column, justify="right" if column not in ("block", "path") else "left")
    lost = 1 - prediction.availability
    for block in prediction.blocks[:top]:
        share = block.gain / lost if lost > 0 else 0.0
        table.add_row(block.label, block.path, format_percent(block.availability),
                      _down((1 - block.availability) * YEAR_S), _down(block.gain * YEAR_S),
                      f"{share:.0%}")
    parts: list[Text | Table] = [head, table]
    if len(prediction.blocks) > top:
        parts.append(Text(f"... and {len(prediction.blocks) - top} more blocks (--format json)"))
    if prediction.assumed_mttr:
        parts.append(Text("Assumed a repair time of 1h for " + ", ".join(prediction.assumed_mttr)
                          + " (given by availability alone; add mttr: to set it)"))
    if simulated is not None:
        verdict = ("contains" if simulated.contains(prediction.availability)
                   else "does not contain")
        interval = f"{format_percent(simulated.low)} to {format_percent(simulated.high)}"
        parts.append(Text(
            f"Simulated {simulated.years:,} system-years: {format_percent(simulated.availability)}"
            f" ({simulated.confidence:.0%} interval {interval}, {verdict} the prediction),"
            f" {_down(simulated.downtime_per_year_s)} down a year, {simulated.outages:,} outages"
        ))
    return Group(*parts)


def render_observed(observations: list[Observation], window: str) -> Table | Text:
    """Each component linked to a pool: predicted against observed, and why they differ."""
    if not observations:
        return Text("No component has pool: to compare with the uptime history.")
    table = Table(title=f"Predicted and observed (servers of the pool, last {window})",
                  title_justify="left")
    for column in ("component", "pool", "servers", "predicted", "observed", "MTBF", "MTTR",
                   "why"):
        table.add_column(column, overflow="fold")
    for item in observations:
        table.add_row(
            item.component, item.pool, str(item.servers), format_percent(item.predicted),
            "-" if item.observed is None else format_percent(item.observed),
            f"{hours(item.observed_mtbf_s)} vs {hours(item.predicted_mtbf_s)}",
            f"{hours(item.observed_mttr_s)} vs {hours(item.predicted_mttr_s)}",
            item.explanation,
        )
    return table
