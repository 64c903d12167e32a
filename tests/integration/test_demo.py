"""`ninelives demo`, the README's first command, end to end."""

from __future__ import annotations

import os
import subprocess

from tests.support.node import NINELIVES


def test_the_demo_loses_no_request_and_reports_the_uptime_it_measured() -> None:
    run = subprocess.run(
        [str(NINELIVES), "demo", "--requests", "800"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "requests answered (100.000%), 0 failed" in out, out
    # The node's own uptime history: the pool never went down (the backup tier served),
    # while the killed servers have incidents with their causes.
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert "100.000%" in rows["pool app"], out
    assert "100.000%" in rows["listener web"], out
    assert "100.000%" not in rows["server app/a1"] and "100.000%" in rows["server app/b1"], out
