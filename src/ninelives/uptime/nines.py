"""Availability as nines, and the downtime it allows: ``ninelives nines 99.99``.

Pure arithmetic in :class:`~decimal.Decimal`, so that a round trip is exact: 99.99% allows
52m33.6s a year, and 52m33.6s a year is 99.99% again (in floats ``1 - 0.9999`` is
``0.00010000000000000009``). A month is 30 days and a year 365, as SLO windows count them
(the SRE workbook's 30-day window; 99.9% over 30 days is 43.2 minutes).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from ninelives.units import describe_input, format_duration

DAY = 86_400
PERIODS: dict[str, int] = {"year": 365 * DAY, "month": 30 * DAY, "week": 7 * DAY, "day": DAY}
_AVAILABILITY = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*%?")


def parse_availability(text: str) -> Decimal:
    """``"99.99"`` or ``"99.99%"`` -> ``Decimal("0.9999")``. The number is a percentage
    with or without its sign: ``nines 99.9`` means 99.9%, never 99.9 as a fraction."""
    match = _AVAILABILITY.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"expected an availability like 99.99 or 99.99%, got {describe_input(text)}"
        )
    try:
        percent = Decimal(match.group(1))
    except InvalidOperation:  # pragma: no cover - the regex admits only decimal numbers
        raise ValueError(f"expected a number, got {describe_input(text)}") from None
    if not 0 < percent <= 100:
        raise ValueError(f"expected an availability above 0% and at most 100%, got {text.strip()}")
    return percent / 100


def allowed_downtime(availability: Decimal, period_s: int) -> Decimal:
    """Seconds of downtime per ``period_s`` that ``availability`` (a fraction) allows."""
    return (1 - availability) * period_s


def availability_for(downtime_s: Decimal, period_s: Decimal) -> Decimal:
    """The availability (a fraction) of ``downtime_s`` seconds down per ``period_s``."""
    if period_s <= 0:
        raise ValueError(f"expected a period above 0s, got {format_duration(float(period_s))}")
    if not 0 <= downtime_s <= period_s:
        raise ValueError(
            f"expected a downtime from 0 to the period ({format_duration(float(period_s))}), "
            f"got {format_duration(float(downtime_s))}"
        )
    return 1 - downtime_s / period_s


def nines(availability: float | Decimal) -> float | None:
    """``0.9999`` -> ``4.0``; ``0.9995`` -> ``3.30``. None for 100%: no downtime has no
    number of nines (it is not infinitely available, only not seen down)."""
    unavailability = 1 - float(availability)
    if unavailability <= 0:
        return None
    # Rounded so that 99.99% reads 4.0 rather than 3.9999999999999996.
    return round(-math.log10(unavailability), 9) + 0.0  # + 0.0: never -0.0


def format_percent(availability: float | Decimal) -> str:
    """An availability as a percentage with enough digits to tell its nines apart:
    ``0.999049`` -> ``"99.999049%"``, ``0.999`` -> ``"99.9%"``, ``1`` -> ``"100%"``."""
    percent = Decimal(str(availability)) * 100
    gap = 100 - percent
    if gap <= 0:
        return "100%"
    # Three significant digits of what is missing from 100%, at least two decimals.
    places = max(2, math.ceil(-math.log10(float(gap))) + 2)
    text = f"{percent:.{places}f}".rstrip("0").rstrip(".")
    return f"{text}%"
