"""``ninelives model`` run as the real command on examples/arch.yaml, and --observed
beside a real node (over its admin API and from its state directory)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support.model import ARCH, model, observed
from tests.support.node import PATIENT_HEALTH, Harness, one_pool_config, wait_until


def test_json_with_simulation() -> None:
    done = model(str(ARCH), "--format", "json", "--simulate", "5000", "--seed", "11")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["availability"] == pytest.approx(0.99996349, abs=1e-8)
    assert answer["downtime_per_year_s"] == pytest.approx((1 - answer["availability"]) * 365
                                                          * 86400)
    assert answer["nines"] == pytest.approx(4.4376, abs=1e-4)
    first = answer["blocks"][0]
    assert (first["path"], first["kind"]) == ("system.series[1].parallel", "series")
    assert first["label"] == "parallel 2x link with common cause"
    gains = [block["gain_if_perfect"] for block in answer["blocks"]]
    assert gains == sorted(gains, reverse=True)
    assert answer["assumed_mttr"] == ["psu"]
    simulated = answer["simulated"]
    assert simulated["years"] == 5000 and simulated["confidence"] == 0.99
    assert simulated["low"] <= answer["availability"] <= simulated["high"]
    assert simulated["contains_analytic"] is True


def test_table_and_plot(tmp_path: Path) -> None:
    picture = tmp_path / "arch.svg"
    done = model(str(ARCH), "--plot", str(picture), "--simulate", "1000", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert "Predicted availability 99.99635% (4.44 nines), 19m11s down a year" in done.stdout
    assert "link (common cause)" in done.stdout
    assert "Assumed a repair time of 1h for psu" in done.stdout
    assert "Simulated 1,000 system-years" in done.stdout
    root = ET.fromstring(picture.read_text())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [node.text or "" for node in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "System availability 99.99635%, 19m11s down a year" in texts
    assert any(text.startswith("2 of 3x server: ") for text in texts)


def test_problems_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("components: {link: {mtbf: 2000h, mttr: 1h}}\n"
                   "system: {series: [{parallel: {of: lnk, count: 2}}]}\n")
    done = model(str(bad))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        'system.series[0].parallel.of: no component named "lnk"',
        f"{bad}: 1 problem(s)",
    ]
    assert done.stdout == ""


def test_unwritable_plot(tmp_path: Path) -> None:
    done = model(str(ARCH), "--plot", str(tmp_path / "missing" / "arch.svg"))
    assert done.returncode == 2
    assert "cannot write" in done.stderr


def test_observed_over_the_admin_api_and_from_the_state_dir(harness: Harness) -> None:
    servers = harness.backends("a1", "a2", "a3")
    node = harness.node(one_pool_config(servers, {"health": PATIENT_HEALTH}))
    a2 = servers[1]
    a2.kill()
    wait_until(lambda: node.server_status("app", "a2")["state"] == "down", timeout=10,
               message="a2 down")
    harness.backend("a2", port=a2.port)
    wait_until(lambda: node.server_status("app", "a2")["state"] == "up", timeout=10,
               message="a2 up again")
    state_dir = harness.directory / "state"
    # The outage is over: later readings see the same down time and more up time. The
    # node writes its history meanwhile (a heartbeat a second).
    first = observed("--state-dir", str(state_dir))
    admin = observed("--admin", f"{node.admin[0]}:{node.admin[1]}")
    last = observed("--config", str(harness.directory / "lb-test.yaml"))
    for reading in (first, admin, last):
        assert (reading["servers"], reading["incidents"]) == (3, 1), reading
        assert reading["observed_mttr_s"] == admin["observed_mttr_s"] > 0
        assert "observed MTTR" in reading["explanation"]
    assert first["observed"] <= admin["observed"] <= last["observed"] < 1
    assert first["observed_s"] <= admin["observed_s"] <= last["observed_s"]

    table = model(str(ARCH), "--observed", "--state-dir", str(state_dir))
    assert table.returncode == 0, table.stderr
    assert "Predicted and observed" in table.stdout


def test_observed_state_dir_problems(tmp_path: Path) -> None:
    done = model(str(ARCH), "--observed", "--state-dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr == (f"ninelives model: {tmp_path / 'uptime.db'}: no uptime history "
                           "here (expected a node's state_dir, which holds uptime.db)\n")
    assert not (tmp_path / "uptime.db").exists()
    (tmp_path / "uptime.db").write_text("not a database")
    done = model(str(ARCH), "--observed", "--state-dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith(f"ninelives model: cannot read the uptime history in "
                                  f"{tmp_path}: ")
    alone = model(str(ARCH), "--state-dir", str(tmp_path))
    assert alone.returncode == 2 and "--state-dir and --config go with --observed" in (
        alone.stderr)


def test_observed_without_a_node(tmp_path: Path) -> None:
    done = model(str(ARCH), "--observed", "--admin", "127.0.0.1:9")
    assert done.returncode == 1
    assert done.stderr.startswith("ninelives: ")
