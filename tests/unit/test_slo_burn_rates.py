"""SLOs with a fake clock: budgets, burn rates, and alerts firing and resolving at the
right moments (a 30-day SLO evaluated second by second in milliseconds)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ninelives.uptime.availability import Interval
from ninelives.uptime.maintenance import MaintenanceRule
from ninelives.uptime.slo import (
    DAY,
    HOUR,
    Objective,
    Sli,
    SloStatus,
    alert_changes,
    burn_rate,
    evaluate,
)
from ninelives.uptime.slo_report import measure, planned_requests, slo_statuses, status_json
from ninelives.uptime.store import UptimeStore

T0 = 1_750_000_000.0  # the outage begins (UTC, 2025-06-15 15:06:40)
RATE = 10.0  # requests per second, steadily
WEB = Objective("web", ("listener", "web"), 0.999, 30 * DAY)


Measure = Callable[[float, float], Sli]


def steady(outages: list[tuple[float, float]]) -> Measure:
    """The request SLI over [start, end) of a listener serving RATE requests/s, all bad
    during ``outages``."""

    def sli(start: float, end: float) -> Sli:
        bad = sum(max(0.0, min(end, e) - max(start, s)) for s, e in outages)
        return Sli(RATE * (end - start - bad), RATE * (end - start))

    return sli


def at(objective: Objective, sli: Measure, now: float) -> SloStatus:
    measured = {w: sli(now - w, now) for w in objective.windows()}
    return evaluate(objective, measured, now)


def page(status: SloStatus) -> bool:
    return dict((s, f) for s, f, _ in status.alerts)["page"]


def test_the_workbook_pairs_for_30_days_and_scaled_for_7() -> None:
    assert [(p.severity, p.long_s, p.short_s, p.factor) for p in WEB.pairs()] == [
        ("page", HOUR, 300, 14.4), ("page", 6 * HOUR, 1800, 6.0),
        ("ticket", 3 * DAY, 6 * HOUR, 1.0)]
    week = Objective("w", ("pool", "app"), 0.999, 7 * DAY)
    assert [(p.long_s, p.short_s) for p in week.pairs()] == [
        (840, 70), (5040, 420), (60480, 5040)]
    assert burn_rate(Sli(999, 1000), 0.999) == pytest.approx(1.0)
    assert burn_rate(Sli(0, 0), 0.999) is None


def test_budget_total_spent_and_left() -> None:
    sli = steady([(T0, T0 + 600)])
    status = at(WEB, sli, T0 + 3600)
    valid = RATE * 30 * DAY
    assert status.budget_total == pytest.approx(0.001 * valid)
    assert status.budget_spent == pytest.approx(6000)
    assert status.budget_left_ratio == pytest.approx(1 - 6000 / (0.001 * valid))
    assert status.met is True
    body = status_json(status)
    assert body["listener"] == "web" and body["budget"]["spent"] == 6000
    # An hour on: the pages' short windows are clean, the ticket's 3 d/6 h still burn.
    assert [a["state"] for a in body["alerts"]] == ["resolved", "firing"]


def test_a_fast_burn_pages_at_the_right_seconds_and_resolves_when_the_short_windows_clear(
) -> None:
    """All requests fail from T0 to T0 + 600 (budget 0.1%).

    - 1h/5m (14.4x): above 51.84 s bad of the hour and 4.32 s of 5 min: fires at 52 s;
      after the outage its 5 min window is clean enough 295.68 s later (896 s).
    - 6h/30m (6x): 129.6 s of 6 h and 10.8 s of 30 min: fires at 130 s, holds until the
      30 min window has 10.8 s bad or less (2390 s). The page resolves then.
    - 3d/6h (1x, ticket): 259.2 s of 3 days: fires at 260 s, holds for 6 h.
    """
    sli = steady([(T0, T0 + 600)])
    firing: dict[tuple[str, str], bool] = {}
    pairs = [False, False, False]
    moments = []
    for second in range(0, 3000):
        status = at(WEB, sli, T0 + second)
        firing, changes = alert_changes(firing, [status], status.at)
        moments += [(second, c.severity, c.firing, c.reason) for c in changes]
        for i, burn in enumerate(status.burns):
            if burn.firing != pairs[i]:
                pairs[i] = burn.firing
                moments.append((second, f"pair {i}", burn.firing, burn.reason))
    assert [(s, what, f) for s, what, f, _ in moments] == [
        (52, "page", True), (52, "pair 0", True), (130, "pair 1", True),
        (260, "ticket", True), (260, "pair 2", True),
        (896, "pair 0", False), (2390, "page", False), (2390, "pair 1", False)]
    assert moments[0][3] == "1h/5m: burn rate 14.44x over 1h, 173.33x over 5m, both above 14.4x"
    assert moments[5][3] == ("1h/5m: burn rate 166.67x over 1h, 13.33x over 5m, "
                             "not both above 14.4x")
    assert moments[6][3].endswith("6h/30m: burn rate 27.78x over 6h, 5.56x over 30m, "
                                  "not both above 6x")


def test_a_slow_burn_opens_a_ticket_not_a_page() -> None:
    """One request in 500 fails for days: a burn rate of 2x, under both page factors."""
    def sli(start: float, end: float) -> Sli:
        valid = RATE * (end - start)
        return Sli(valid * (1 - 0.002), valid)

    status = at(WEB, sli, T0)
    alerts = {s: (f, why) for s, f, why in status.alerts}
    assert alerts["page"][0] is False and alerts["ticket"][0] is True
    assert alerts["ticket"][1] == "3d/6h: burn rate 2.00x over 3d, 2.00x over 6h, both above 1x"


def test_a_quiet_hour_does_not_page() -> None:
    """Three requests in the hour, two failed: a burn rate of 667x, but under min_requests."""
    measured = {w: Sli(1, 3) for w in WEB.windows()}
    status = evaluate(WEB, measured, T0)
    assert not page(status)
    assert status.burns[0].reason == "1h/5m: quiet: 3 requests over 1h, fewer than 100"
    loud = Objective("web", ("listener", "web"), 0.999, 30 * DAY, min_requests=3)
    assert page(evaluate(loud, measured, T0))


def test_no_data_is_no_alert() -> None:
    status = evaluate(Objective("t", ("pool", "app"), 0.999, 30 * DAY, "time"), {}, T0)
    assert not any(f for _, f, _ in status.alerts)
    assert status.budget_left_ratio is None and status.met is None


def test_a_time_slo_from_intervals_pages_and_stays_quiet_in_maintenance() -> None:
    """A pool down from T0: a time SLO pages when 51.84 s of the last hour were down."""
    objective = Objective("app-time", ("pool", "app"), 0.999, 30 * DAY, "time")
    intervals = {("pool", "app"): [
        Interval("up", T0 - 40 * DAY, T0, "serving"),
        Interval("down", T0, None, "no server available"),
    ]}

    def state(now: float, rules: list[MaintenanceRule]) -> SloStatus:
        return measure(objective, {}, intervals, {}, rules, now)

    assert not page(state(T0 + 51, []))
    status = state(T0 + 53, [])
    assert page(status)
    assert status.sli.bad == pytest.approx(53)
    assert status.budget_total == pytest.approx(0.001 * 30 * DAY)
    # The same outage inside a planned window of the pool: excluded, and nothing fires.
    upgrade = MaintenanceRule(("pool", "app"), 3600.0, ZoneInfo("UTC"), "upgrade",
                              once=_utc(T0 - 10))
    quiet = state(T0 + 53, [upgrade])
    assert not page(quiet) and quiet.sli.bad == 0


def test_a_listener_time_slo_is_in_series_with_its_pool() -> None:
    objective = Objective("web-time", ("listener", "web"), 0.99, 30 * DAY, "time")
    intervals = {
        ("listener", "web"): [Interval("listening", T0 - DAY, None, "bound")],
        ("pool", "app"): [Interval("up", T0 - DAY, T0 - 3600, "serving"),
                          Interval("down", T0 - 3600, T0 - 3000, "no server")],
    }
    status = measure(objective, {"web": "app"}, intervals, {}, [], T0)
    assert status.sli.bad == pytest.approx(600)
    assert status.sli.valid == pytest.approx(DAY - 3000)


def test_request_counts_feed_a_request_slo() -> None:
    counts = {w: {("listener", "web"): (5, 0, 900, 0, 50, 45)} for w in WEB.windows()}
    status = measure(WEB, {"web": "app"}, {}, counts, [], T0)
    assert (status.sli.good, status.sli.valid) == (950, 1000)  # a 4xx is good, 5xx and none bad
    assert page(status)


def test_alert_changes_only_on_a_change() -> None:
    quiet = evaluate(WEB, {}, T0)
    firing, changes = alert_changes({}, [quiet], T0)
    assert changes == [] and firing == {("web", "page"): False, ("web", "ticket"): False}
    burning = evaluate(WEB, {w: Sli(0, 10_000) for w in WEB.windows()}, T0 + 1)
    firing, changes = alert_changes(firing, [burning], T0 + 1)
    assert [(c.slo, c.severity, c.firing, c.at) for c in changes] == [
        ("web", "page", True, T0 + 1), ("web", "ticket", True, T0 + 1)]
    firing, changes = alert_changes(firing, [burning], T0 + 1)
    assert changes == []
    firing, changes = alert_changes(firing, [evaluate(WEB, {}, T0 + 2)], T0 + 2)
    assert [(c.severity, c.firing, c.reason) for c in changes] == [
        ("page", False, "1h/5m: quiet: 0 requests over 1h, fewer than 100; "
                        "6h/30m: quiet: 0 requests over 6h, fewer than 100"),
        ("ticket", False, "3d/6h: quiet: 0 requests over 3d, fewer than 100")]


def _utc(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, ZoneInfo("UTC")).replace(tzinfo=None)


def test_an_alert_of_an_slo_removed_from_the_config_resolves() -> None:
    burning = evaluate(WEB, {w: Sli(0, 10_000) for w in WEB.windows()}, T0)
    firing, _ = alert_changes({}, [burning], T0)
    firing, changes = alert_changes(firing, [], T0 + 10)
    assert firing == {}
    assert [(c.slo, c.severity, c.firing, c.at, c.reason) for c in changes] == [
        ("web", "page", False, T0 + 10, "the SLO is no longer configured"),
        ("web", "ticket", False, T0 + 10, "the SLO is no longer configured")]


def test_requests_inside_a_maintenance_window_are_not_counted(tmp_path: Path) -> None:
    """With a real store: 500 failed requests inside a one-off window on the pool, 1,000
    good ones after it; the listener's request SLO sees only the 1,000."""
    store = UptimeStore(tmp_path / "uptime.db", clock=lambda: T0)
    store.open("lb-1")
    try:
        store.add_counts(T0 - 3000, [("listener", "web", (0, 0, 0, 0, 0, 500))])
        store.add_counts(T0 - 600, [("listener", "web", (0, 0, 1000, 0, 0, 0))])
        assert store.flush()
        once = datetime.fromtimestamp(T0 - 3600, ZoneInfo("UTC")).replace(tzinfo=None)
        upgrade = MaintenanceRule(("pool", "app"), 1800.0, ZoneInfo("UTC"), "upgrade",
                                  once=once)
        (plain,) = slo_statuses(store, [WEB], {"web": "app"}, [], T0)
        (planned,) = slo_statuses(store, [WEB], {"web": "app"}, [upgrade], T0)
    finally:
        store.close()
    assert (plain.sli.good, plain.sli.valid) == (1000, 1500)
    assert ("ticket", True) in [(a[0], a[1]) for a in plain.alerts]  # 333x over 3 d and 6 h
    assert (planned.sli.good, planned.sli.valid) == (1000, 1000)
    assert not any(firing for _, firing, _ in planned.alerts)
    assert planned.budget_left_ratio == 1.0
    assert planned_requests(store, WEB, {"web": "app"}, [upgrade], T0)[HOUR] == (
        0, 0, 0, 0, 0, 500)
