"""The arithmetic of nines, and ``ninelives nines`` (which needs no node)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from ninelives.cli import main
from ninelives.uptime.nines import (
    PERIODS,
    allowed_downtime,
    availability_for,
    format_percent,
    nines,
    parse_availability,
)


def test_the_reference_figures() -> None:
    # ANCHORS.md: 99.9999% is 31.536 s a year, 99.99% 52.56 min, 99.9% over 30 days 43.2 min.
    assert allowed_downtime(parse_availability("99.9999%"), PERIODS["year"]) == Decimal("31.536")
    assert allowed_downtime(parse_availability("99.99"), PERIODS["year"]) == Decimal("3153.6")
    assert allowed_downtime(parse_availability("99.9"), PERIODS["month"]) == 43.2 * 60
    assert allowed_downtime(parse_availability("99.99"), PERIODS["week"]) == Decimal("60.48")
    assert allowed_downtime(parse_availability("99.99"), PERIODS["day"]) == Decimal("8.64")


def test_parse_availability_takes_a_percentage_with_or_without_its_sign() -> None:
    assert parse_availability("99.99") == parse_availability(" 99.99 % ") == Decimal("0.9999")
    assert parse_availability("100") == 1
    for bad in ("abc", "0", "100.1", "-5", "", "99.9.9"):
        with pytest.raises(ValueError, match="availability"):
            parse_availability(bad)


@given(
    st.decimals(min_value=Decimal("0.001"), max_value=100, places=6, allow_nan=False),
    st.sampled_from(sorted(PERIODS)),
)
def test_downtime_and_availability_round_trip_exactly(percent: Decimal, period: str) -> None:
    availability = parse_availability(f"{percent}%")
    seconds = PERIODS[period]
    downtime = allowed_downtime(availability, seconds)
    assert availability_for(downtime, Decimal(seconds)) == availability


def test_nines_counts_them() -> None:
    assert nines(Decimal("0.9999")) == 4.0
    assert nines(0.999) == 3.0
    assert nines(0.9995) == pytest.approx(3.30103)
    assert nines(0.0) == 0.0 and str(nines(0.0)) == "0.0"
    assert nines(1.0) is None  # never seen down is not "infinitely available"


def test_format_percent_shows_enough_digits_to_tell_the_nines_apart() -> None:
    assert format_percent(0.99999049) == "99.999049%"
    assert format_percent(0.999049) == "99.9049%"
    assert format_percent(0.999) == "99.9%"
    assert format_percent(Decimal("0.9995")) == "99.95%"
    assert format_percent(1.0) == "100%"
    assert format_percent(0.5) == "50%"


def test_the_inverse_refuses_impossible_downtimes() -> None:
    with pytest.raises(ValueError, match="from 0 to the period"):
        availability_for(Decimal(90_000), Decimal(86_400))
    with pytest.raises(ValueError, match="period above 0"):
        availability_for(Decimal(1), Decimal(0))


def test_cli_nines_prints_the_budget_per_period() -> None:
    result = CliRunner().invoke(main, ["nines", "99.99"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "99.99% (4.00 nines) allows at most:"
    assert "52m33.6s down a year (365d)" in lines[1]
    assert "4m19.2s down a month (30d)" in lines[2]
    assert "1m0.48s down a week" in lines[3]
    assert "8.64s down a day" in lines[4]
    result = CliRunner().invoke(main, ["nines", "99.95%", "--json"])
    assert json.loads(result.output)["downtime_s"]["month"] == pytest.approx(1296.0)


def test_cli_nines_inverse() -> None:
    result = CliRunner().invoke(main, ["nines", "--downtime", "5m", "--per", "year"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "5m down per 365d is 99.999049% (5.02 nines)"
    result = CliRunner().invoke(main, ["nines", "--downtime", "43.2m", "--per", "month"])
    assert result.output.strip() == "43m12s down per 30d is 99.9% (3.00 nines)"
    result = CliRunner().invoke(main, ["nines", "--downtime", "1h", "--per", "90d", "--json"])
    assert json.loads(result.output)["availability"] == pytest.approx(1 - 1 / (90 * 24))


def test_cli_nines_errors_say_what_was_expected() -> None:
    result = CliRunner().invoke(main, ["nines"])
    assert result.exit_code == 2 and "give an availability" in result.output
    result = CliRunner().invoke(main, ["nines", "lots"])
    assert result.exit_code == 2 and 'got "lots"' in result.output
    result = CliRunner().invoke(main, ["nines", "--downtime", "2d", "--per", "day"])
    assert result.exit_code == 2 and "from 0 to the period (1d)" in result.output
