"""Availability from intervals, with a fake clock: a 30-day window in milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ninelives.config import parse_config
from ninelives.uptime.availability import (
    Interval,
    Segment,
    _parallel,
    _sweep,
    combine,
    state_class,
    summarise,
    timeline,
)
from ninelives.uptime.maintenance import MaintenanceRule, merge, parse_weekdays
from ninelives.uptime.nines import nines
from ninelives.uptime.report import Topology, build_report, parse_window, window_from

DAY = 86_400.0
T0 = datetime(2025, 6, 2, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
UTC_ZONE = ZoneInfo("UTC")


def at(day: float, hours: float = 0.0) -> float:
    return T0 + day * DAY + hours * 3600


def server(*changes: tuple[float, str, str], until: float | None = None) -> list[Interval]:
    """Intervals from (time, state, reason) transitions; the last is open unless ``until``."""
    out = []
    for i, (start, state, reason) in enumerate(changes):
        end = changes[i + 1][0] if i + 1 < len(changes) else until
        out.append(Interval(state, start, end, reason))
    return out


def account(kind: str, intervals: list[Interval], start: float, end: float, now: float,
            maintenance: list[tuple[float, float]] | None = None):  # type: ignore[no-untyped-def]
    return summarise(timeline(kind, intervals, now), maintenance or [], start, end, now)


def test_a_30_day_window_with_one_outage_of_43_minutes_is_three_nines() -> None:
    outage = 43.2 * 60  # 99.9% over 30 days allows exactly this
    intervals = server(
        (at(0), "up", "1 check passed: HTTP 200"),
        (at(10), "down", "2 checks failed: connect refused"),
        (at(10) + outage, "up", "2 checks passed: HTTP 200"),
    )
    now = at(30)
    result = account("server", intervals, at(0), now, now)
    assert result.window_s == 30 * DAY
    assert result.down_s == pytest.approx(outage)
    assert result.up_s == pytest.approx(30 * DAY - outage)
    assert result.availability == pytest.approx(0.999)
    assert nines(result.availability or 0) == pytest.approx(3.0)
    (incident,) = result.incidents
    assert (incident.start, incident.end) == (at(10), at(10) + outage)
    assert incident.cause == "2 checks failed: connect refused"
    assert result.mttr_s == pytest.approx(outage)
    assert result.mtbf_s == pytest.approx(30 * DAY - outage)
    assert result.unobserved_s == 0


def test_falling_is_up_rising_and_ejected_are_down_and_one_run_is_one_incident() -> None:
    intervals = server(
        (at(0), "up", "ok"),
        (at(1), "falling", "1 check failed"),  # still in service
        (at(1, 1), "ejected", "ejected for 10s: 3 consecutive failures, last: 502"),
        (at(1, 2), "down", "2 checks failed: HTTP 502"),
        (at(1, 3), "rising", "1 check passed"),
        (at(1, 4), "up", "2 checks passed"),
        (at(2), "down", "2 checks failed: timed out"),
        (at(2, 1), "up", "2 checks passed"),
    )
    result = account("server", intervals, at(0), at(3), at(3))
    assert result.down_s == pytest.approx(4 * 3600)
    assert [(i.start, i.end, i.state, i.cause) for i in result.incidents] == [
        (at(1, 1), at(1, 4), "ejected", "ejected for 10s: 3 consecutive failures, last: 502"),
        (at(2), at(2, 1), "down", "2 checks failed: timed out"),
    ]
    assert result.mttr_s == pytest.approx(2 * 3600)


def test_drain_and_maint_are_planned_and_unknown_time_is_not_counted() -> None:
    intervals = server(
        (at(0), "unchecked", "not checked yet"),
        (at(0, 1), "up", "ok"),
        (at(1), "maint", "set by operator"),
        (at(1, 6), "up", "set by operator"),
        (at(2), "down", "connect refused"),
        until=at(2, 2),  # then nothing: the node was not running
    )
    result = account("server", intervals, at(0), at(3), at(3))
    assert result.planned_s == pytest.approx(6 * 3600)
    assert result.down_s == pytest.approx(2 * 3600)
    assert result.up_s == pytest.approx(2 * DAY - 7 * 3600)
    assert result.unobserved_s == pytest.approx(3600 + DAY - 2 * 3600)
    assert result.availability == pytest.approx(result.up_s / (result.up_s + 7200))


def test_an_open_interval_runs_to_now_and_an_ongoing_incident_has_no_end() -> None:
    intervals = server((at(0), "up", "ok"), (at(5), "down", "connect refused"))
    result = account("server", intervals, at(0), at(5, 1), now=at(5, 1))
    (incident,) = result.incidents
    assert incident.end is None and incident.duration_s(at(5, 1)) == pytest.approx(3600)
    assert result.down_s == pytest.approx(3600)


def test_an_incident_begun_before_the_window_keeps_its_start_and_counts_inside_it() -> None:
    intervals = server(
        (at(0), "up", "ok"), (at(9), "down", "disk full"), (at(10, 6), "up", "ok"),
    )
    result = account("server", intervals, at(10), at(11), at(11))
    (incident,) = result.incidents
    assert incident.start == at(9) and incident.cause == "disk full"
    assert incident.downtime_s == pytest.approx(6 * 3600)
    assert result.down_s == pytest.approx(6 * 3600)
    # And an incident outside the window is not listed.
    assert account("server", intervals, at(20), at(21), at(21)).incidents == ()


def test_maintenance_time_is_taken_out_and_an_outage_inside_it_is_no_incident() -> None:
    sunday_2am = MaintenanceRule(None, 3600.0, UTC_ZONE, "patching", parse_weekdays("sunday"),
                                 at=datetime(2000, 1, 1, 2).time())
    spans = sunday_2am.spans(at(0), at(14))
    assert spans == [(at(6, 2), at(6, 3)), (at(13, 2), at(13, 3))]
    intervals = server(
        (at(0), "up", "ok"),
        (at(6, 2.25), "down", "rebooting"),  # inside the first window: planned
        (at(6, 2.75), "up", "ok"),
        (at(13, 2.5), "down", "upgrade failed"),  # overruns the second window by 1h
        (at(13, 4), "up", "ok"),
    )
    result = account("server", intervals, at(0), at(14), at(14), spans)
    assert result.maintenance_s == pytest.approx(2 * 3600)
    assert result.maintenance_down_s == pytest.approx(0.5 * 3600 + 0.5 * 3600)
    assert result.down_s == pytest.approx(3600)
    (incident,) = result.incidents
    assert incident.start == at(13, 2.5) and incident.cause == "upgrade failed"
    assert incident.downtime_s == pytest.approx(3600)
    assert result.up_s == pytest.approx(14 * DAY - 2 * 3600 - 3600)


def test_weekly_windows_follow_local_time_across_daylight_saving() -> None:
    paris = ZoneInfo("Europe/Paris")
    rule = MaintenanceRule(None, 3600.0, paris, "nightly", parse_weekdays(["sun"]),
                           at=datetime(2000, 1, 1, 2, 30).time())
    start = datetime(2025, 3, 20, tzinfo=UTC).timestamp()
    end = datetime(2025, 4, 10, tzinfo=UTC).timestamp()
    starts = [datetime.fromtimestamp(s, UTC).strftime("%m-%d %H:%M") for s, _ in
              rule.spans(start, end)]
    # 02:30 CET is 01:30 UTC; on 30 March 02:30 does not exist (clocks go to 03:00) and the
    # window starts with the offset before the change; after it, 02:30 CEST is 00:30 UTC.
    assert starts == ["03-23 01:30", "03-30 01:30", "04-06 00:30"]
    once = MaintenanceRule(("pool", "app"), 7200.0, paris, "migration",
                           once=datetime(2025, 7, 1, 22, 0))
    assert once.spans(start, end) == []
    july = datetime(2025, 7, 1, 20, tzinfo=UTC).timestamp()  # 22:00 CEST
    assert once.spans(july - DAY, july + DAY) == [(july, july + 7200)]


def test_a_window_from_the_config() -> None:
    config = parse_config("""
listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]
pools: {app: {servers: [{name: a1, address: 127.0.0.1:9001}]}}
uptime:
  retention: 90d
  maintenance:
    - {pool: app, every: [sat, sunday], start: "23:30", duration: 2h, timezone: UTC}
    - {server: app/a1, start: "2025-06-03 10:00", duration: 30m, reason: disk swap}
""", env={})
    assert config.uptime.retention == 90 * DAY
    weekly, once = config.uptime.rules()
    assert weekly.scope == ("pool", "app") and weekly.weekdays == (5, 6)
    assert once.scope == ("server", "app/a1") and once.reason == "disk swap"
    # Sunday's window of the week before reaches into Monday; Saturday's and Sunday's
    # windows are apart.
    assert weekly.spans(at(0), at(7)) == [
        (at(-1, 23.5), at(0, 1.5)), (at(5, 23.5), at(6, 1.5)), (at(6, 23.5), at(7, 1.5)),
    ]
    assert merge([(at(0), at(1)), (at(1), at(2)), (at(3), at(4)), (at(3.5), at(3.6))]) == [
        (at(0), at(2)), (at(3), at(4))]
    assert once.spans(at(0), at(7)) == [(at(1, 10), at(1, 10.5))]
    assert weekly.describe() == (
        "pool app: every saturday, sunday at 23:30 UTC for 2h (planned maintenance)")
    assert once.describe() == "server app/a1: 2025-06-03 10:00 UTC for 30m (disk swap)"


def test_combine_in_series_and_in_parallel_names_the_part_that_failed() -> None:
    listener = timeline("listener", server(
        (at(0), "listening", "bound"), (at(3), "down", "node not running: stopped"),
        (at(4), "listening", "bound"),
    ), now=at(5))
    pool = timeline("pool", server(
        (at(0), "up", "2 of 2"), (at(1), "down", "no server available"), (at(2), "up", "1 of 2"),
    ), now=at(5))
    served = combine([("", listener), ("pool app: ", pool)], "series")
    assert [(s.start, s.end, s.cls, s.reason) for s in served] == [
        (at(0), at(1), "up", "pool app: 2 of 2"),  # both went up at once: the last one's
        (at(1), at(2), "down", "pool app: no server available"),
        (at(2), at(3), "up", "pool app: 1 of 2"),
        (at(3), at(4), "down", "node not running: stopped"),
        (at(4), at(5), "up", "bound"),
    ]
    a1 = timeline("server", server(
        (at(0), "up", "ok"), (at(1), "down", "refused"), (at(3), "up", "ok")), now=at(5))
    a2 = timeline("server", server(
        (at(0), "up", "ok"), (at(2), "down", "timed out"), (at(4), "up", "ok")), now=at(5))
    provider = combine([("a1: ", a1), ("a2: ", a2)], "parallel")
    result = summarise(provider, [], at(0), at(5), at(5))
    (incident,) = result.incidents
    assert (incident.start, incident.end) == (at(2), at(3))
    assert incident.cause == "a2: timed out"  # the failure that took the last server down


def test_series_with_a_part_not_observed_is_not_counted() -> None:
    up = [Segment(at(0), at(2), "up", "up", "ok")]
    half = [Segment(at(1), at(2), "up", "up", "ok")]
    assert [(s.start, s.end) for s in combine([("", up), ("", half)], "series")] == [
        (at(1), at(2))]
    assert state_class("server", "who knows") == "unknown"
    assert state_class("pool", "backup") == "up"


def test_many_short_outages_over_30_days() -> None:
    # One 6-second outage an hour for 30 days: 720 incidents, 99.833% available.
    changes: list[tuple[float, str, str]] = []
    for hour in range(30 * 24):
        changes += [(at(0, hour), "up", "ok"), (at(0, hour) + 3594, "down", f"blip {hour}")]
    result = account("server", server(*changes, until=at(30)), at(0), at(30), at(30))
    assert len(result.incidents) == 720
    assert result.down_s == pytest.approx(720 * 6)
    assert result.availability == pytest.approx(1 - 6 / 3600)
    assert result.mttr_s == pytest.approx(6) and result.mtbf_s == pytest.approx(3594)
    assert result.incidents[-1].cause == "blip 719"


def test_the_report_for_a_node() -> None:
    topology = Topology(
        node="lb-1",
        listeners=(("web", "app"),),
        pools=(("app", (("a1", "cloud-a"), ("a2", "cloud-a"), ("b1", "cloud-b"))),),
    )
    now = at(1)
    intervals = {
        ("node", "lb-1"): server((at(0), "up", "serving")),
        ("listener", "web"): server((at(0), "listening", "bound 127.0.0.1:8080")),
        ("pool", "app"): server((at(0), "up", "3 of 3"), (at(0, 5), "backup", "cloud-b"),
                                (at(0, 6), "up", "3 of 3")),
        ("server", "app/a1"): server((at(0), "up", "ok"), (at(0, 5), "down", "refused"),
                                     (at(0, 6), "up", "ok")),
        ("server", "app/a2"): server((at(0), "up", "ok"), (at(0, 5), "maint", "operator"),
                                     (at(0, 6), "up", "ok")),
        ("server", "app/b1"): server((at(0), "up", "ok")),
        ("server", "app/old"): server((at(0), "up", "ok"), until=at(0, 1)),
    }
    requests = {("listener", "web"): (1, 0, 990, 0, 5, 4)}
    rule = MaintenanceRule(("server", "app/b1"), 3600.0, UTC_ZONE, "kernel update",
                           once=datetime(2025, 6, 2, 12))
    report = build_report(topology, intervals, requests, [rule], at(0), now, now)
    by = {(e["kind"], e.get("pool"), e["name"]): e for e in report["entities"]}
    assert [k[0] for k in by] == ["node", "listener", "pool", "provider", "provider",
                                  "server", "server", "server", "server"]
    assert by["listener", "app", "web"]["availability"] == 1.0  # backup kept it served
    assert by["listener", "app", "web"]["requests"] == {
        "total": 1000, "good": 995, "bad": 5, "availability": 0.995}
    cloud_a = by["provider", "app", "cloud-a"]
    assert cloud_a["servers"] == ["a1", "a2"] and cloud_a["incident_count"] == 1
    assert cloud_a["incidents"][0]["cause"] == "a1: refused"  # a2 was in maint, a1 down
    assert cloud_a["downtime_s"] == 3600
    a2 = by["server", "app", "a2"]
    assert (a2["planned_s"], a2["downtime_s"], a2["availability"]) == (3600, 0, 1.0)
    b1 = by["server", "app", "b1"]
    assert (b1["maintenance_s"], b1["uptime_s"]) == (3600, DAY - 3600)
    assert b1["provider"] == "cloud-b"
    old = by["server", "app", "old"]
    assert old["configured"] is False and old["unobserved_s"] == DAY - 3600
    assert report["maintenance"] == [{"start": at(0, 12), "end": at(0, 13),
                                      "reason": "kernel update", "scope": "server app/b1"}]
    only = build_report(topology, intervals, requests, [], at(0), now, now, kinds=("pool",))
    assert [e["kind"] for e in only["entities"]] == ["pool"]


def test_windows() -> None:
    assert parse_window("1h") == 3600
    assert parse_window("30d") == 30 * DAY
    assert parse_window("1y") == 365 * DAY
    assert parse_window("2w") == 14 * DAY
    for bad in ("1x", "", "0s", "y"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)
    now = at(10)
    assert window_from({}, now) == (now - 30 * DAY, now)
    assert window_from({"from": "2025-06-03", "to": "2025-06-04T00:00:00+00:00"}, now) == (
        at(1), at(2))
    assert window_from({"from": str(at(9))}, now) == (at(9), now)
    for params in ({"from": "2025-06-05", "to": "2025-06-04"}, {"to": "2025-06-04"},
                   {"window": "1h", "from": "2025-06-04"}, {"from": "yesterday"}):
        with pytest.raises(ValueError):
            window_from(params, now)


@given(st.lists(st.lists(st.tuples(st.integers(1, 20), st.sampled_from(
    ["up", "falling", "down", "ejected", "maint", "unchecked"])), max_size=12), min_size=1,
    max_size=5))
def test_the_quick_parallel_combination_agrees_with_the_sweep(
    parts: list[list[tuple[int, str]]]
) -> None:
    timelines = []
    for p, steps in enumerate(parts):
        t = 0.0
        changes = []
        for length, state in steps:
            changes.append((t, state, f"{state} {p}"))
            t += length
        timelines.append((f"s{p}: ", timeline("server", server(*changes, until=t), t)))
    quick = combine(timelines, "parallel")
    slow = _sweep(timelines, _parallel, len(timelines))

    def shape(segments: list[Segment]) -> list[tuple[float, float, str, str]]:
        merged: list[tuple[float, float, str, str]] = []
        for s in segments:
            why = s.reason if s.cls != "up" else ""  # whose reason an up piece has may differ
            if merged and merged[-1][1] == s.start and merged[-1][2:] == (s.cls, why):
                merged[-1] = (merged[-1][0], s.end, s.cls, why)
            else:
                merged.append((s.start, s.end, s.cls, why))
        return merged

    assert shape(quick) == shape(slow)
