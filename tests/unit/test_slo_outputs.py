"""What SLOs send out: the gauges of /metrics and the webhooks' bounded queue."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ninelives.metrics import SloCollector
from ninelives.state_file import write_json
from ninelives.uptime.slo import DAY, Objective, Sli, evaluate
from ninelives.uptime.watch import ALERTS_FILE, firing_json, load_firing
from ninelives.uptime.webhooks import QUEUE_SIZE, Webhooks

WEB = Objective("web", ("listener", "web"), 0.999, 30 * DAY)


def test_slo_gauges_per_slo_and_window() -> None:
    burning = evaluate(WEB, {w: Sli(9_000, 10_000) for w in WEB.windows()}, 1.0)
    unseen = evaluate(Objective("quiet", ("pool", "app"), 0.99, 30 * DAY, "time"), {}, 1.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SloCollector(lambda: [burning, unseen]))
    text = generate_latest(registry).decode()
    samples = {line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
               for line in text.splitlines() if not line.startswith("#")}
    assert samples['ninelives_slo_target{slo="web"}'] == 0.999
    assert samples['ninelives_slo_availability{slo="web"}'] == 0.9
    assert samples['ninelives_slo_error_budget_left_ratio{slo="web"}'] == pytest.approx(-99)
    for window in ("1h", "5m", "6h", "30m", "3d"):
        assert samples[f'ninelives_slo_burn_rate{{slo="web",window="{window}"}}'] == \
            pytest.approx(100)
    assert 'ninelives_slo_alert_firing{severity="page",slo="web"} 1.0' in text
    assert 'ninelives_slo_alert_firing{severity="ticket",slo="quiet"} 0.0' in text
    # Nothing seen: no made-up availability, budget or burn rate.
    assert 'ninelives_slo_availability{slo="quiet"}' not in text
    assert 'ninelives_slo_burn_rate{slo="quiet"' not in text


def test_a_full_queue_drops_and_counts_and_sending_never_waits() -> None:
    with socket.socket() as sock:  # a port nobody listens on: every delivery is refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"

    async def scenario() -> Webhooks:
        hooks = Webhooks(lambda: [url], first_retry=30.0)
        for n in range(QUEUE_SIZE + 5):
            hooks.send({"type": "incident", "n": n})
        target = hooks.targets[url]
        for _ in range(500):  # the first message taken, refused, waiting to retry
            if target.failures:
                break
            await asyncio.sleep(0.01)
        await hooks.close()
        return hooks

    hooks = asyncio.run(scenario())
    target = hooks.targets[url]
    assert hooks.dropped == 5  # the queue held 1000; the task had not taken one yet
    assert target.failures == 1 and target.delivered == 0
    assert "ConnectError" in target.last_error
    assert hooks.status()[0]["waiting"] == QUEUE_SIZE - 1


def test_the_alerts_firing_are_kept_in_a_file_and_a_bad_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state" / ALERTS_FILE
    assert load_firing(path) == {}
    write_json(path, firing_json({("web", "page"): True, ("web", "ticket"): False,
                                  ("api", "ticket"): True}))
    assert load_firing(path) == {("api", "ticket"): True, ("web", "page"): True}
    path.write_text('{"version": 1, "firing": [{"slo": "web", "severity": "sms"}]}')
    assert load_firing(path) == {}
    path.write_text("{not json")
    assert load_firing(path) == {}
