"""Planned maintenance windows: when they are, in seconds since the epoch.

A window is one-off (``start: "2025-06-01 02:00"``) or recurs weekly on some days
(``every: sunday``, ``every: [saturday, sunday]``, ``every: day``) at a local time of day
in a time zone (``timezone: Europe/Paris``, IANA names through :mod:`zoneinfo`). Time spent
inside a window is excluded from availability and reported apart.

The local time is converted with the zone's offset on that date, so a window at 02:00 stays
at 02:00 local time across daylight saving changes. A local time that does not exist on the
day clocks go forward (02:30 in Paris on the last Sunday of March) starts at the instant it
would have had with the offset before the change (03:30 local), as :mod:`zoneinfo` does with
``fold=0``; a duration is elapsed time, so ``1h`` is always 3600 s.

Everything here is pure: the caller gives the range of time it wants windows for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ninelives.units import describe_input, format_duration

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
EVERY_DAY = ("day", "daily")
_TIME_OF_DAY = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")

Span = tuple[float, float]  # [start, end) in seconds since the epoch


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {describe_input(name)} (an IANA name like UTC or Europe/Paris)"
        ) from None


def parse_weekdays(value: object) -> tuple[int, ...]:
    """``"sunday"`` -> ``(6,)``; ``["sat", "sun"]`` -> ``(5, 6)``; ``"day"`` -> every day."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise ValueError("expected a weekday, a list of weekdays or day, got an empty list")
    days: set[int] = set()
    for item in items:
        word = item.strip().lower() if isinstance(item, str) else ""
        if word in EVERY_DAY:
            days.update(range(7))
            continue
        matches = [
            i for i, name in enumerate(WEEKDAYS) if len(word) >= 3 and name.startswith(word)
        ]
        if len(matches) != 1:
            raise ValueError(
                f"expected a weekday like sunday (or sun), a list of them, or day, "
                f"got {describe_input(item)}"
            )
        days.add(matches[0])
    return tuple(sorted(days))


def parse_time_of_day(text: str) -> time:
    """``"02:00"`` or ``"02:00:30"``: when a recurring window starts, local time."""
    match = _TIME_OF_DAY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected a time of day like 02:00, got {describe_input(text)}")
    hour, minute, second = match.groups()
    return time(int(hour), int(minute), int(second or 0))


def parse_moment(text: str) -> datetime:
    """``"2025-06-01 02:00"`` (or ISO 8601, with ``T`` and optionally an offset): when a
    one-off window starts. Without an offset it is local time of the window's zone."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a date and time like 2025-06-01 02:00, got {describe_input(text)}"
        ) from None
    if len(text.strip()) <= 10:  # a date alone: say which time, midnight is a guess
        raise ValueError(
            f"expected a date and a time like 2025-06-01 02:00, got {describe_input(text)}"
        )
    return moment


@dataclass(frozen=True, slots=True)
class MaintenanceRule:
    """One configured window, parsed. ``scope`` says what it covers (see :func:`covers`)."""

    scope: tuple[str, str] | None  # ("pool", "app"), ("server", "app/a1"), ("listener", "web")
    duration: float
    zone: ZoneInfo
    reason: str
    weekdays: tuple[int, ...] = ()  # recurring on these days (0 = Monday); empty: one-off
    at: time | None = None  # recurring: local time of day
    once: datetime | None = None  # one-off: the start (naive = local time in ``zone``)

    def spans(self, start: float, end: float) -> list[Span]:
        """The windows that overlap ``[start, end)``, in order."""
        if self.once is not None:
            first = _timestamp(self.once, self.zone)
            if first < end and first + self.duration > start:
                return [(first, first + self.duration)]
            return []
        assert self.at is not None
        out: list[Span] = []
        # A window that began the day(s) before may still be open at ``start``.
        day = datetime.fromtimestamp(start - self.duration, self.zone).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, self.zone).date()
        while day <= last:
            if day.weekday() in self.weekdays:
                begin = _timestamp(datetime.combine(day, self.at), self.zone)
                if begin < end and begin + self.duration > start:
                    out.append((begin, begin + self.duration))
            day += timedelta(days=1)
        return merge(out)  # a window longer than the days between two overlaps the next

    def describe(self) -> str:
        if self.once is not None:
            when = f"{self.once.isoformat(' ', 'minutes')}"
        else:
            days = "every day" if len(self.weekdays) == 7 else "every " + ", ".join(
                WEEKDAYS[d] for d in self.weekdays
            )
            assert self.at is not None
            when = f"{days} at {self.at.isoformat('minutes')}"
        what = f"{self.scope[0]} {self.scope[1]}" if self.scope else "everything"
        zone = "" if self.once is not None and self.once.tzinfo is not None else f" {self.zone.key}"
        return f"{what}: {when}{zone} for {format_duration(self.duration)} ({self.reason})"


def _timestamp(moment: datetime, zone: ZoneInfo) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()


def covers(rule: MaintenanceRule, kind: str, entity: str, pool: str | None) -> bool:
    """Does ``rule`` apply to the entity? A rule without scope covers everything; a pool's
    covers the pool, its servers and providers and the listeners in front of it (``pool``
    is the entity's pool: a listener's default pool, a server's or provider's own); a
    server's or a listener's covers only that one."""
    if rule.scope is None:
        return True
    scope_kind, name = rule.scope
    if scope_kind == "pool":
        return (kind == "pool" and entity == name) or (
            kind in ("server", "provider", "listener") and pool == name
        )
    return kind == scope_kind and entity == name


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, overlapping or touching spans joined."""
    out: list[Span] = []
    for begin, finish in sorted(spans):
        if out and begin <= out[-1][1]:
            if finish > out[-1][1]:
                out[-1] = (out[-1][0], finish)
        else:
            out.append((begin, finish))
    return out


def spans_for(
    windows: Sequence[tuple[MaintenanceRule, list[Span]]], kind: str, entity: str,
    pool: str | None,
) -> list[Span]:
    """The spans of every rule that covers the entity, merged. ``windows`` pairs each rule
    with its spans over the time of interest, computed once for all entities."""
    chosen = [spans for rule, spans in windows if covers(rule, kind, entity, pool)]
    if len(chosen) == 1:
        return chosen[0]
    return merge(span for spans in chosen for span in spans)
