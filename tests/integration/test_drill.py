"""``ninelives drill`` end to end: the command starts three demo backends and a node from
a config, loads the listener, injects one fault and reports. The pool keeps its default
settings except for an HTTP check (a TCP check cannot see a hung server: the kernel
accepts its connections).

Each drill is a real ``ninelives drill`` process started by the harness (stopped by pid,
its stderr shown on failure); it stops what it started itself, and a failed assertion
carries the logs it kept of its node and backends.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.node import NINELIVES, ROOT, Harness, Process, _child_env, free_port

DRILL_DEADLINE = 60.0  # seconds one drill may take, start-up and shutdown included
SERVERS = ("a1", "a2", "a3")


def drill_config(harness: Harness) -> Path:
    servers = [{"name": name, "address": f"127.0.0.1:{free_port()}"} for name in SERVERS]
    return harness.write_config(
        {
            "listeners": [{"name": "web", "bind": "127.0.0.1:0", "pool": "app"}],
            "pools": {"app": {"health": {"http": {"path": "/"}}, "servers": servers}},
        }
    )


def logs_of(directory: Path) -> str:
    parts = []
    for path in sorted(directory.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-30:]
        parts.append(f"--- {path.name}\n" + "\n".join(tail))
    return "\n".join(parts)


def run_drill(harness: Harness, fault: str, *options: str) -> tuple[dict[str, Any], str]:
    """Run ``ninelives drill --json`` to its end; its report and the logs it kept."""
    config = drill_config(harness)
    logs = harness.directory / f"drill-{fault}"
    out_path = harness.directory / f"drill-{fault}.json"
    err_path = harness.logs / f"drill-{fault}.log"
    argv = [
        str(NINELIVES), "drill", str(config), "--fault", fault, "--server", "a2", "--json",
        "--log-dir", str(logs), "--before", "1s", "--during", "2s", "--after", "1s",
        "--rate", "300", *options,
    ]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        popen = subprocess.Popen(
            argv, cwd=ROOT, env=_child_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    process = Process(label=f"ninelives drill --fault {fault}", popen=popen, log_path=err_path)
    harness.processes.append(process)
    try:
        code = popen.wait(DRILL_DEADLINE)
    except subprocess.TimeoutExpired:
        process.stop()
        raise AssertionError(
            f"the drill did not end within {DRILL_DEADLINE}s\n{logs_of(logs)}"
        ) from None
    explain = f"exit {code}\n{logs_of(logs)}"
    assert code == 0, explain
    report: dict[str, Any] = json.loads(out_path.read_text())
    return report, explain + "\n--- report\n" + json.dumps(report, indent=1)


def assert_sane(report: dict[str, Any], explain: str) -> None:
    phases = report["phases"]
    assert report["server"] == "a2", explain
    assert report["requests"] == sum(p["requests"] for p in phases.values()), explain
    # Before the fault every server answered its share.
    assert set(phases["before"]["answered_by"]) == set(SERVERS), explain
    assert all(p["requests"] > 0 for p in phases.values()), explain
    assert report["failed"] == 0, explain


def test_a_killed_server_costs_nothing_and_gets_no_requests_within_a_second(
    harness: Harness,
) -> None:
    report, explain = run_drill(harness, "kill", "--back-within", "3s")
    assert_sane(report, explain)
    assert report["actions"][0]["what"].startswith("SIGKILL a2"), explain
    assert report["stopped_after"] is not None and report["stopped_after"] < 1.0, explain
    assert report["still_receiving"] is False, explain


def test_a_hung_server_costs_nothing_and_is_back_after_it_continues(harness: Harness) -> None:
    report, explain = run_drill(harness, "hang", "--during", "3s", "--back-within", "10s")
    assert_sane(report, explain)
    assert [a["what"].split()[0] for a in report["actions"]] == ["SIGSTOP", "SIGCONT"], explain
    # Its check found it down while it hung: the proxy stopped sending to it.
    assert report["stopped_after"] is not None, explain
    assert report["back_after"] is not None, explain
    assert report["phases"]["after"]["answered_by"].get("a2", 0) > 0, explain


def test_a_slow_server_keeps_its_share_and_its_latency_shows(harness: Harness) -> None:
    report, explain = run_drill(harness, "slow", "--delay", "300ms")
    assert_sane(report, explain)
    during = report["phases"]["during"]
    assert during["answered_by"].get("a2", 0) > 0, explain
    # A third of the answers took 300 ms longer: p99 shows it, the median does not.
    assert during["p99_ms"] >= 300, explain
    assert during["p50_ms"] < 300, explain
    assert report["still_receiving"] is True, explain
    assert report["last_answer_after"] is not None, explain
    assert report["back_after"] is not None, explain


def test_a_flapping_server_costs_nothing(harness: Harness) -> None:
    report, explain = run_drill(harness, "flap", "--flaps", "2", "--back-within", "1s")
    assert_sane(report, explain)
    kinds = [a["what"].split()[0] for a in report["actions"]]
    assert kinds.count("SIGKILL") == 2, explain
    assert report["stopped_after"] is not None and report["stopped_after"] < 1.0, explain
