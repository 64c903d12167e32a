"""``ninelives slo`` for people: one row per SLO, then one line per alert that fires."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from ninelives.units import format_duration
from ninelives.uptime.nines import format_percent


def _percent(value: Any) -> str:
    return "no data" if value is None else format_percent(float(value))


def _rate(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}x"


def budget_text(slo: dict[str, Any]) -> str:
    """``"87.5% left (6000 of 48000 requests spent)"``."""
    budget = slo.get("budget", {})
    ratio = budget.get("left_ratio")
    if ratio is None:
        return "no data"
    unit = "requests" if slo.get("kind") == "requests" else "s"
    spent, total = budget.get("spent", 0), budget.get("total", 0)
    amounts = (f"{spent:g} of {total:.0f} {unit}" if unit == "requests"
               else f"{format_duration(round(spent))} of {format_duration(round(total))}")
    return f"{format_percent(float(ratio))} left ({amounts} spent)"


def slo_table(report: dict[str, Any]) -> Table:
    table = Table(title="SLOs", title_justify="left")
    for column in ("slo", "of", "target", "window", "sli", "error budget", "burn rates",
                   "alerts"):
        table.add_column(column)
    for slo in report.get("slos", []):
        of = f"listener {slo['listener']}" if "listener" in slo else f"pool {slo.get('pool')}"
        rates = "  ".join(
            f"{format_duration(b['long_s'])} {_rate(b['long'])} / "
            f"{format_duration(b['short_s'])} {_rate(b['short'])}"
            for b in slo.get("burn_rates", [])
        )
        alerts = Text()
        for alert in slo.get("alerts", []):
            firing = alert.get("state") == "firing"
            alerts.append(f"{alert.get('severity')} {alert.get('state')} ",
                          style="bold red" if firing else "green")
        met = slo.get("met")
        sli = Text(_percent(slo.get("sli")),
                   style="" if met is None else ("green" if met else "bold red"))
        table.add_row(
            str(slo.get("name", "")), f"{of} ({slo.get('kind')})",
            _percent(slo.get("target")), format_duration(float(slo.get("window_s", 0))),
            sli, budget_text(slo), rates, alerts,
        )
    firing = [
        f"{slo.get('name')}: {alert.get('severity')}: {alert.get('reason')}"
        for slo in report.get("slos", []) for alert in slo.get("alerts", [])
        if alert.get("state") == "firing"
    ]
    if firing:
        table.caption = "firing: " + "; ".join(firing)
    elif not report.get("slos"):
        table.caption = "no SLO configured (uptime.slos)"
    return table
