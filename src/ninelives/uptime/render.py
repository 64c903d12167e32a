"""The uptime report and nines for people: tables (rich), CSV, and sentences."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.table import Table
from rich.text import Text

from ninelives.units import format_duration
from ninelives.uptime.nines import PERIODS, allowed_downtime, format_percent, nines

ENTITY_COLUMNS = (
    "kind", "pool", "name", "availability", "nines", "uptime_s", "downtime_s", "planned_s",
    "maintenance_s", "unobserved_s", "incident_count", "mtbf_s", "mttr_s", "requests",
    "bad_requests", "request_availability",
)
INCIDENT_COLUMNS = (
    "kind", "pool", "name", "start", "end", "duration_s", "downtime_s", "state", "cause",
)


def when(moment: float | None) -> str:
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z"
    )


def _duration(seconds: float | None) -> str:
    """Whole seconds from a minute on (a table has no room for 1m4.913s), else to the ms."""
    if seconds is None:
        return "-"
    return format_duration(round(seconds) if seconds >= 60 else seconds)


def _percent(value: float | None) -> str:
    return "no data" if value is None else format_percent(value)


def _nines(value: float | None, availability: float | None) -> str:
    if availability is None:
        return "-"
    return "∞" if value is None else f"{value:.2f}"


def _label(entity: dict[str, Any]) -> str:
    pool = entity.get("pool")
    name = str(entity.get("name", ""))
    return f"{pool}/{name}" if pool and entity.get("kind") in ("server", "provider") else name


def uptime_table(report: dict[str, Any]) -> Table:
    window = format_duration(float(report.get("window_s", 0)))
    table = Table(
        title=f"node {report.get('node', '?')}: availability over {window} "
              f"({when(report.get('from'))} to {when(report.get('to'))})",
        title_justify="left",
    )
    for column in ("kind", "name"):
        table.add_column(column)
    for column in ("available", "nines", "down", "incidents", "MTBF", "MTTR", "requests"):
        table.add_column(column, justify="right")
    for entity in report.get("entities", []):
        availability = entity.get("availability")
        down = float(entity.get("downtime_s") or 0)
        requests = entity.get("requests", {})
        served = requests.get("availability")
        table.add_row(
            str(entity.get("kind", "")), _label(entity),
            Text(_percent(availability), "red" if down else "green"),
            _nines(entity.get("nines"), availability),
            Text(_duration(down), "red" if down else ""),
            str(entity.get("incident_count", 0)),
            _duration(entity.get("mtbf_s")), _duration(entity.get("mttr_s")),
            "-" if served is None else f"{format_percent(served)} ok",
        )
    return table


def incidents_table(report: dict[str, Any]) -> Table:
    table = Table(title="incidents", title_justify="left")
    for column in ("kind", "name", "start", "end", "downtime", "cause"):
        table.add_column(column, justify="right" if column == "downtime" else "left")
    for row in _incident_rows(report):
        table.add_row(
            row["kind"], _label(row), when(row["start"]), when(row["end"]) or "ongoing",
            _duration(row["downtime_s"]), row["cause"],
        )
    return table


def _incident_rows(report: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for entity in report.get("entities", []):
        for incident in entity.get("incidents", []):
            yield {
                "kind": entity.get("kind"), "pool": entity.get("pool"),
                "name": entity.get("name"), **incident,
            }


def uptime_csv(report: dict[str, Any], incidents: bool = False) -> str:
    out = io.StringIO()
    if incidents:
        writer = csv.DictWriter(out, INCIDENT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in _incident_rows(report):
            writer.writerow({**row, "start": when(row["start"]), "end": when(row["end"])})
        return out.getvalue()
    writer = csv.DictWriter(out, ENTITY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for entity in report.get("entities", []):
        requests = entity.get("requests", {})
        writer.writerow({
            **entity,
            "requests": requests.get("total", 0),
            "bad_requests": requests.get("bad", 0),
            "request_availability": requests.get("availability"),
        })
    return out.getvalue()


def budget_lines(availability: Decimal) -> list[str]:
    """``ninelives nines 99.99``: the downtime it allows per year, month, week, day."""
    count = nines(availability)
    how_many = "no downtime at all" if count is None else f"{count:.2f} nines"
    lines = [f"{format_percent(availability)} ({how_many}) allows at most:"]
    for period, seconds in PERIODS.items():
        allowed = float(allowed_downtime(availability, seconds))
        label = {"year": "a year (365d)", "month": "a month (30d)"}.get(period, f"a {period}")
        lines.append(f"  {format_duration(allowed):>12} down {label}")
    return lines
