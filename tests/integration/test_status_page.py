"""The status page of a real node in a real browser (headless Chromium): it renders with
data (the 90-day bars, the SLO rows, the incident and the planned maintenance) and the
screenshot shows the bars in their colours."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.browser import chromium, dump_dom, png_pixels, screenshot
from tests.support.node import Harness, count_backends, one_pool_config, wait_until

GREY = (0xC9, 0xD1, 0xD9)  # a day not observed
BAR_COLOURS = {(0x2D, 0xA4, 0x4E), (0xD4, 0xA7, 0x2C), (0xFB, 0x85, 0x00), (0xCF, 0x22, 0x2E)}
DAY_PIXELS = 6 * 30  # one day's rectangle


@pytest.mark.skipif(chromium() is None, reason="chromium not installed (make test installs it)")
def test_the_status_page_renders_with_data_in_headless_chromium(
    harness: Harness, tmp_path: Path
) -> None:
    (a1,) = harness.backends("a1")
    config = one_pool_config([a1])
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    config["uptime"] = {
        "slos": [{"name": "web-requests", "listener": "web", "target": "99.9%"},
                 {"name": "app-time", "pool": "app", "target": "99.95%", "kind": "time"}],
        "maintenance": [{"pool": "app", "start": tomorrow, "duration": "1h",
                         "reason": "database upgrade"}],
    }
    node = harness.node(config)
    assert sum(count_backends(node.addr(), 10).values()) == 10
    a1.kill()
    wait_until(lambda: node.status()["pools"][0]["state"] == "down", timeout=10,
               message="the pool down")
    url = f"http://{node.admin[0]}:{node.admin[1]}/status"

    def incident_recorded() -> bool:
        page = node.admin_request("GET", "/status", token=None).body.decode()
        return "no server available" in page and "app-time" in page

    wait_until(incident_recorded, timeout=20, interval=0.2, message="the incident on the page")

    dom = dump_dom(url)
    assert dom.count('<rect class="day"') == 180, dom[:3000]  # 90 days, listener and pool
    assert len(re.findall(r"<title>\d{4}-\d\d-\d\d: (no data|[\d.]+% up, [^<]* down)</title>",
                          dom)) == 180
    rows = re.findall(r'<tr class="slo"><td>([^<]+)</td>', dom)
    assert rows == ["web-requests", "app-time"], rows
    assert "database upgrade" in dom and "no server available" in dom
    assert re.search(r"Pool app <span[^>]*>down</span>", dom), dom[:3000]
    assert re.search(r"24h [\d.]+%, 30d [\d.]+%, 90d [\d.]+%", dom)

    png = screenshot(url, tmp_path / "status.png", size=(1000, 1200))
    width, height, colours = png_pixels(png)
    assert (width, height) == (1000, 1200)
    assert len(png) > 10_000 and len(colours) > 50  # text, badges, bars: not a blank page
    # 89 days before the history began, grey, twice; today in a colour of availability.
    assert colours[GREY] >= 2 * 85 * DAY_PIXELS, colours.most_common(12)
    assert sum(colours[c] for c in BAR_COLOURS) >= DAY_PIXELS, colours.most_common(12)
