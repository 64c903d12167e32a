"""The prediction beside the uptime history: aggregation over a pool and the explanation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ninelives.model.load import parse_arch
from ninelives.model.observed import compare, linked
from ninelives.uptime.report import Topology, uptime_report
from ninelives.uptime.schema import StoreError
from ninelives.uptime.store import UptimeStore, open_history

ARCH = """
components:
  server: {mtbf: 4000h, mttr: 4h, pool: app}
  db: {availability: 99.9%, pool: db}
  cache: {availability: 99%, pool: cache}
  lb: {availability: 99.99%}
system:
  series:
    - lb
    - k_of_n: {k: 2, of: server, count: 3}
    - parallel: {of: db, count: 2, beta: 0.1}
    - cache
"""
HOUR = 3600.0


def server(pool: str, name: str, up: float, down: float, incidents: int) -> dict[str, Any]:
    return {"kind": "server", "pool": pool, "name": name, "uptime_s": up, "downtime_s": down,
            "incident_count": incidents}


def test_linked_components_keep_their_figures_as_given() -> None:
    root = parse_arch(ARCH)
    by_name = {c.name: c for c in linked(root)}
    assert set(by_name) == {"server", "db", "cache"}
    assert by_name["db"].availability == pytest.approx(0.999)  # not its independent part
    assert by_name["server"].mttr_s == 4 * HOUR


def test_compare_adds_up_the_pool_and_explains() -> None:
    report = {"entities": [
        server("app", "a1", 700 * HOUR, 1 * HOUR, 2),
        server("app", "a2", 719 * HOUR, 0.0, 0),
        server("app", "a3", 720 * HOUR, 1 / 3 * HOUR, 1),
        server("db", "d1", 720 * HOUR, 0.0, 0),
        {"kind": "pool", "name": "app", "uptime_s": 1.0, "downtime_s": 1e9, "incident_count": 9},
    ]}
    app, db, cache = compare(parse_arch(ARCH), report)
    assert (app.component, app.servers, app.incidents) == ("server", 3, 3)
    assert app.observed == pytest.approx(2139 / (2139 + 4 / 3))
    assert app.observed_mttr_s == pytest.approx(4 / 9 * HOUR)
    assert app.observed_mtbf_s == pytest.approx(713 * HOUR)
    assert app.explanation == (
        "observed 99.9377% is better than the predicted 99.9001%; "
        "3 outages where 0.5 were expected (observed MTBF 29d17h vs 166d16h); "
        "observed MTTR 26m40s vs given 4h (from 3 outages: a rough figure)"
    )
    assert db.incidents == 0
    assert db.explanation == ("no outage in 30d of server time, where the prediction expects "
                              "0.7: observed 100% vs predicted 99.9%")
    assert (cache.servers, cache.observed) == (0, None)
    assert cache.explanation == "no server of pool cache in the uptime history"
    assert cache.to_json()["predicted_mttr_s"] == HOUR


def test_a_history_read_from_its_file_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "uptime.db"
    store = UptimeStore(path)
    store.open("lb-1")
    now = time.time()
    for server in ("a1", "a2"):
        store.mark("server", f"app/{server}", "up", "", now - 3 * HOUR)
    store.mark("server", "app/a2", "down", "2 checks failed: connect refused", now - 2 * HOUR)
    store.mark("server", "app/a2", "up", "", now - 2 * HOUR + 600)
    store.stop("lb-1", now)
    store.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    history = open_history(tmp_path)
    report = uptime_report(history, Topology("", (), ()), [], now - 4 * HOUR, now, now,
                           ["server"])
    (app,) = [item for item in compare(parse_arch(ARCH), report) if item.pool == "app"]
    assert (app.servers, app.incidents, app.observed_mttr_s) == (2, 1, 600)
    assert app.observed == pytest.approx(1 - 600 / (6 * HOUR))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    with pytest.raises(StoreError, match="no uptime history here"):
        open_history(tmp_path / "elsewhere")
