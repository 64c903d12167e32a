"""Durations, sizes and percentages as people write them."""

from __future__ import annotations

import pytest

from ninelives.units import (
    describe_input,
    format_duration,
    parse_duration,
    parse_percent,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        ("1m30s", 90.0),
        ("1h 2m", 3720.0),
        (" 250 ms ", 0.25),
        ("0.1s", 0.1),
        ("3", 3.0),
        (2, 2.0),
        (0.25, 0.25),
        (0, 0.0),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["fast", "", "2x", "-1s", "s", "1M", "1.2.3s", "1s fast"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(bad)
    assert str(caught.value) == f'expected a duration like 500ms or 2s, got "{bad}"'


@pytest.mark.parametrize("bad", [True, None, -1, float("nan"), float("inf"), [1]])
def test_parse_duration_rejects_non_strings(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration like 500ms or 2s, got "):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (0.0015, "1.5ms"),
        (2, "2s"),
        (1.5, "1.5s"),
        (90, "1m30s"),
        (3600, "1h"),
        (86400 + 7200, "1d2h"),
        (60.5, "1m0.5s"),
        (-2, "-2s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.001, 0.5, 1, 1.25, 59, 61, 3599.5, 90061])
def test_format_duration_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        (512, 512),
        ("16KiB", 16384),
        ("1MiB", 1048576),
        ("1GiB", 1 << 30),
        ("1KB", 1000),
        ("1MB", 1_000_000),
        ("16kib", 16384),
        ("1.5KiB", 1536),
        ("10B", 10),
        ("2 MiB", 2 << 20),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["big", "16K", "1.3B", "-1KiB", "KiB"])
def test_parse_size_rejects(bad: str) -> None:
    expected = r"^expected a (size like 512, 16KiB or 1MB|whole number of bytes), got "
    with pytest.raises(ValueError, match=expected):
        parse_size(bad)


def test_parse_size_rejects_bool_and_negative() -> None:
    with pytest.raises(ValueError, match="got true"):
        parse_size(True)
    with pytest.raises(ValueError, match="got -5"):
        parse_size(-5)


@pytest.mark.parametrize(
    ("text", "fraction"),
    [("99.95%", 0.9995), ("50%", 0.5), ("100%", 1.0), ("0%", 0.0), ("99.999%", 0.99999)],
)
def test_parse_percent(text: str, fraction: float) -> None:
    assert parse_percent(text) == fraction


def test_parse_percent_rejects_bare_numbers() -> None:
    with pytest.raises(ValueError) as caught:
        parse_percent(0.5)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "expected a percentage like 99.95% or 50%, got 0.5 "
        "(a bare number is ambiguous: write it with %)"
    )
    with pytest.raises(ValueError, match=r'got "99\.9"'):
        parse_percent("99.9")


@pytest.mark.parametrize("bad", ["101%", "-1%", "%", "abc%"])
def test_parse_percent_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match=f'got "{bad}"'):
        parse_percent(bad)


def test_describe_input() -> None:
    values: tuple[object, ...] = ("x", True, None, {}, [], 3, 1.5)
    assert [describe_input(v) for v in values] == [
        '"x"', "true", "nothing", "a mapping", "a list", "3", "1.5",
    ]
