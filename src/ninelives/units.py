"""Quantities as people write them in a config: durations, sizes and percentages.

Each parser accepts exactly one spelling family and raises ValueError naming what was
expected and what was given, so the config layer can show the message unchanged:
``expected a duration like 500ms or 2s, got "fast"``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"

# Seconds per duration unit. "m" is minutes; there is no month unit, so no ambiguity.
_DURATION_UNITS: dict[str, Decimal] = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)")
_DURATION = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+")

# Bytes per size unit: decimal (KB = 1000) and binary (KiB = 1024), as IEC 80000-13 says.
_SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE = re.compile(rf"({_NUMBER})\s*([kmgt]i?b|b)?", re.IGNORECASE)
_PERCENT = re.compile(rf"({_NUMBER})\s*%")


def describe_input(value: object) -> str:
    """Show a value the way the user wrote it in YAML, for ``got ...`` in messages."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return str(value)


def _is_number(value: object) -> bool:
    # bool is an int subclass; `timeout: true` is a mistake, not one second.
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_duration(value: str | float) -> float:
    """Seconds from ``500ms``, ``2s``, ``1m``, ``1h``, ``1d``, ``1m30s`` or a number of seconds."""
    expected = "expected a duration like 500ms or 2s"
    if _is_number(value):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{expected}, got {describe_input(value)}")
        return seconds
    if not isinstance(value, str):
        raise ValueError(f"{expected}, got {describe_input(value)}")
    text = value.strip()
    if re.fullmatch(_NUMBER, text):
        return float(text)  # a bare number means seconds, as it does for numbers
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{expected}, got {describe_input(value)}")
    total = sum(
        (Decimal(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text)),
        Decimal(0),
    )
    return float(total)


def format_duration(seconds: float) -> str:
    """``0.5`` -> ``500ms``, ``2`` -> ``2s``, ``90`` -> ``1m30s``; parse_duration reads it back."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{_trim(round(seconds * 1000, 3))}ms"
    millis = round(seconds * 1000)
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{_trim(millis / 1000)}s")
    return "".join(parts)


def _trim(number: float) -> str:
    text = f"{number:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def parse_size(value: str | int) -> int:
    """Bytes from ``512``, ``16KiB`` (1024-based), ``1KB`` (1000-based), ``1MiB`` ..."""
    expected = "expected a size like 512, 16KiB or 1MB"
    if _is_number(value) and isinstance(value, int):
        if value < 0:
            raise ValueError(f"{expected}, got {describe_input(value)}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{expected}, got {describe_input(value)}")
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{expected}, got {describe_input(value)}")
    number, unit = match.groups()
    size = Decimal(number) * _SIZE_UNITS[(unit or "b").lower()]
    if size != size.to_integral_value():
        raise ValueError(f"expected a whole number of bytes, got {describe_input(value)}")
    return int(size)


def parse_percent(value: str) -> float:
    """A fraction from ``99.95%`` (-> 0.9995) or ``50%`` (-> 0.5).

    A bare number is rejected: ``0.5`` could mean half or half a percent, and an SLO
    target off by a factor of 100 is a silent, expensive mistake.
    """
    expected = "expected a percentage like 99.95% or 50%"
    if _is_number(value):
        raise ValueError(
            f"{expected}, got {describe_input(value)} "
            "(a bare number is ambiguous: write it with %)"
        )
    if not isinstance(value, str):
        raise ValueError(f"{expected}, got {describe_input(value)}")
    match = _PERCENT.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{expected}, got {describe_input(value)}")
    try:
        percent = Decimal(match.group(1))
    except InvalidOperation:  # pragma: no cover - the regex admits only decimal numbers
        raise ValueError(f"{expected}, got {describe_input(value)}") from None
    if percent > 100:
        raise ValueError(f"expected a percentage from 0% to 100%, got {describe_input(value)}")
    # Decimal keeps 99.95% exact: 99.95 / 100 in floats is 0.9995000000000001.
    return float(percent / 100)
