"""The status page, pure: 90 daily bars from intervals, availability per period, SLOs,
incidents and maintenance, rendered as HTML with nothing fetched from elsewhere."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from ninelives.uptime.availability import Interval
from ninelives.uptime.maintenance import MaintenanceRule
from ninelives.uptime.slo import DAY, Objective, Sli, evaluate
from ninelives.uptime.status_page import colour, render_status_page, uptime_view

NOW = 1_750_003_600.0  # 2025-06-15 16:06:40 UTC
TODAY = NOW // DAY * DAY
STATUS = {
    "node": "lb-1", "version": "1", "uptime_s": 10, "ready": True,
    "listeners": [{"name": "web", "pool": "app", "addresses": ["127.0.0.1:80"],
                   "state": "listening"}],
    "pools": [{"name": "app", "state": "up", "reason": "1 server up", "tiers": []}],
}


def test_ninety_days_of_bars_with_a_bad_day_and_days_not_observed() -> None:
    bad_day = TODAY - 3 * DAY
    intervals = {
        ("listener", "web"): [Interval("listening", TODAY - 40 * DAY, None, "bound")],
        ("pool", "app"): [
            Interval("up", TODAY - 40 * DAY, bad_day + 3600, "serving"),
            Interval("down", bad_day + 3600, bad_day + 3600 + 864, "no server available: a1"),
            Interval("up", bad_day + 3600 + 864, None, "a1 up"),
        ],
    }
    upgrade = MaintenanceRule(("pool", "app"), 3600.0, ZoneInfo("UTC"), "upgrade",
                              once=datetime.fromtimestamp(NOW + DAY, ZoneInfo("UTC"))
                              .replace(tzinfo=None))
    view = uptime_view({"web": "app"}, ["app"], intervals, [upgrade], NOW)
    web, app = view.entities
    assert (web.kind, web.name, web.pool, app.kind, app.pool) == (
        "listener", "web", "app", "pool", None)
    assert len(app.days) == 90 and app.days[-1][0] == TODAY and app.days[0][0] == TODAY - 89 * DAY
    assert [a for _, a, _ in app.days[:49]] == [None] * 49  # before the history began
    bad = app.days[-4]
    assert bad[0] == bad_day and bad[1] == 0.99 and bad[2] == 864
    assert app.availability[0] == 1.0 and app.availability[1] < 1
    assert web.days[-4][1] == 0.99  # a listener is down with its pool
    ((label, incident), (label2, _)) = view.incidents
    assert {label, label2} == {"listener web", "pool app"}
    assert incident.cause.endswith("no server available: a1")
    assert view.maintenance[0][2:] == ("upgrade", "pool app")

    slo = evaluate(Objective("web-requests", ("listener", "web"), 0.999, 30 * DAY),
                   {30 * DAY: Sli(999_900, 1_000_000)}, NOW)
    page = render_status_page(STATUS, view, [slo])
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert page.count('<rect class="day"') == 180
    titles = re.findall(r"<title>([^<]*)</title>", page)
    assert titles[0] == "ninelives lb-1"
    assert f"{datetime.fromtimestamp(bad_day, ZoneInfo('UTC')):%Y-%m-%d}: 99% up, 14m24s down" \
        in titles
    assert f'fill="{colour(0.99)}"' in page and f'fill="{colour(1.0)}"' in page
    assert '<tr class="slo"><td>web-requests</td>' in page
    assert "90% left" not in page and "<td>90%</td>" in page  # budget: 100 of 1000 spent
    assert "upgrade" in page and "no server available: a1" in page
    assert "24h 100%, 30d 99.9667%, 90d 99.9754%" in page


def test_without_history_the_page_says_why() -> None:
    page = render_status_page(STATUS, problem="the uptime history is off: read-only disk")
    assert "Uptime history not shown: the uptime history is off: read-only disk." in page
    assert "<h2>Listeners</h2>" in page


def test_colours_by_availability() -> None:
    assert [colour(a) for a in (None, 1.0, 0.9995, 0.995, 0.96, 0.5)] == [
        "#c9d1d9", "#2da44e", "#2da44e", "#d4a72c", "#fb8500", "#cf222e"]
