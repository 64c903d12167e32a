"""``ninelives model`` run as the real command on examples/arch.yaml."""

from __future__ import annotations

import json
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.node import NINELIVES

ARCH = Path(__file__).resolve().parents[2] / "examples" / "arch.yaml"


def model(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(NINELIVES), "model", *args], capture_output=True, text=True,
                          timeout=60)


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


class _Uptime(BaseHTTPRequestHandler):
    """An admin API that answers GET /v1/uptime with three servers of pool app."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        entities = [
            {"kind": "server", "pool": "app", "name": f"a{i}", "uptime_s": 2_590_000.0,
             "downtime_s": 2400.0, "incident_count": 1}
            for i in (1, 2, 3)
        ]
        body = json.dumps({"entities": entities}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def admin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Uptime)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_observed_beside_the_prediction(admin: str) -> None:
    done = model(str(ARCH), "--observed", "--admin", admin, "--window", "30d",
                 "--format", "json")
    assert done.returncode == 0, done.stderr
    assert _Uptime.seen[-1] == "/v1/uptime?window=30d&kind=server"
    (server,) = json.loads(done.stdout)["observed"]
    assert (server["component"], server["pool"], server["servers"]) == ("server", "app", 3)
    assert server["observed_mttr_s"] == 2400.0
    assert "observed MTTR 40m vs given 4h" in server["explanation"]
    table = model(str(ARCH), "--observed", "--admin", admin)
    assert table.returncode == 0, table.stderr
    assert "Predicted and observed" in table.stdout


def test_observed_without_a_node(tmp_path: Path) -> None:
    done = model(str(ARCH), "--observed", "--admin", "127.0.0.1:9")
    assert done.returncode == 1
    assert done.stderr.startswith("ninelives: ")
