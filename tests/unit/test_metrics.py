"""NodeCollector: what a scrape says about real Pool and ListenerStats counters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ninelives import __version__
from ninelives.config import parse_config
from ninelives.listener import ListenerStats
from ninelives.metrics import NodeCollector, histogram_buckets
from ninelives.pool import LATENCY_BUCKETS, AdminState, LatencyHistogram, Pool
from ninelives.states import Health, Signal

CONFIG = """
listeners:
  - {name: web, bind: [127.0.0.1:0], pool: app}
pools:
  app:
    tiers:
      - provider: cloud-a
        servers:
          - {name: a1, address: 127.0.0.1:1, weight: 2}
          - {name: a2, address: 127.0.0.1:2}
      - provider: cloud-b
        servers:
          - {name: b1, address: 127.0.0.1:3}
"""


@dataclass
class FakeNode:
    name: str
    pools: dict[str, Pool]
    listeners: Sequence[ListenerStats]
    started_at: float = 1_700_000_000.5


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(node: FakeNode) -> Samples:
    registry = CollectorRegistry()
    registry.register(NodeCollector(node))
    text = generate_latest(registry).decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("ninelives_")
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def node() -> FakeNode:
    cfg = parse_config(CONFIG)
    pool = Pool("app", cfg.pools["app"], initial=Health.UP)
    web = ListenerStats("web", "http", "app")
    return FakeNode(name="lb-1", pools={"app": pool}, listeners=[web])


def test_listener_counters_by_code(node: FakeNode) -> None:
    web = node.listeners[0]
    web.responses[:] = [4, 0, 90, 3, 7, 2]
    web.connections = 11
    web.active = 5
    s = scrape(node)
    assert value(s, "ninelives_requests_total", listener="web", code="2xx") == 90
    assert value(s, "ninelives_requests_total", listener="web", code="5xx") == 2
    assert value(s, "ninelives_requests_total", listener="web", code="none") == 4
    assert value(s, "ninelives_requests_total", listener="web", code="1xx") == 0
    assert value(s, "ninelives_listener_connections_total", listener="web") == 11
    assert value(s, "ninelives_listener_connections_active", listener="web") == 5


def test_latency_histogram_is_cumulative(node: FakeNode) -> None:
    web = node.listeners[0]
    for seconds in (0.0001, 0.0003, 0.002, 0.02, 0.02, 45.0):
        web.latency.observe(seconds)
    s = scrape(node)

    def bucket(le: str) -> float:
        return value(s, "ninelives_request_duration_seconds_bucket", listener="web", le=le)

    assert bucket("0.0005") == 2
    assert bucket("0.001") == 2
    assert bucket("0.0025") == 3
    assert bucket("0.01") == 3
    assert bucket("0.025") == 5
    assert bucket("30.0") == 5
    assert bucket("+Inf") == 6  # 45 s is over every bound: only in +Inf
    assert value(s, "ninelives_request_duration_seconds_count", listener="web") == 6
    assert value(s, "ninelives_request_duration_seconds_sum", listener="web") == pytest.approx(
        45.0424
    )


def test_bucket_on_a_bound_counts_in_that_bucket() -> None:
    # Prometheus buckets are "less than or equal": 0.1 s belongs to le="0.1".
    latency = LatencyHistogram()
    latency.observe(0.1)
    buckets = dict(histogram_buckets(latency))
    assert buckets["0.05"] == 0
    assert buckets["0.1"] == 1
    assert len(buckets) == len(LATENCY_BUCKETS) + 1


def test_server_and_provider_counters(node: FakeNode) -> None:
    pool = node.pools["app"]
    a1, a2, b1 = pool.servers
    a1.responses[:] = [1, 0, 10, 0, 2, 3]
    a2.responses[:] = [0, 0, 5, 1, 0, 4]
    b1.responses[:] = [2, 0, 7, 0, 0, 0]
    a1.failures = 6
    a2.active = 3
    s = scrape(node)
    srv = "ninelives_server_requests_total"
    assert value(s, srv, pool="app", server="a1", provider="cloud-a", code="5xx") == 3
    assert value(s, srv, pool="app", server="b1", provider="cloud-b", code="none") == 2
    prov = "ninelives_provider_requests_total"
    assert value(s, prov, pool="app", provider="cloud-a", code="2xx") == 15
    assert value(s, prov, pool="app", provider="cloud-a", code="5xx") == 7
    assert value(s, prov, pool="app", provider="cloud-a", code="none") == 1
    assert value(s, prov, pool="app", provider="cloud-b", code="2xx") == 7
    fails = "ninelives_server_failures_total"
    assert value(s, fails, pool="app", server="a1", provider="cloud-a") == 6
    assert value(s, fails, pool="app", server="a2", provider="cloud-a") == 0
    assert value(s, "ninelives_server_active", pool="app", server="a2") == 3


def test_server_state_up_weight_and_pool_gauges(node: FakeNode) -> None:
    pool = node.pools["app"]
    pool.set_admin_state("a1", AdminState.DRAIN)
    pool.check_result(pool.by_name["a2"], Signal.FALL, "connect refused")
    pool.set_weight("b1", 7)
    pool.no_server = 9
    s = scrape(node)

    def state(server: str, name: str) -> float:
        return value(s, "ninelives_server_state", pool="app", server=server, state=name)

    assert [state("a1", n) for n in ("up", "down", "drain", "maint")] == [0, 0, 1, 0]
    assert [state("a2", n) for n in ("up", "down", "drain", "maint")] == [0, 1, 0, 0]
    assert [state("b1", n) for n in ("up", "down", "drain", "maint")] == [1, 0, 0, 0]
    up = "ninelives_server_up"
    assert value(s, up, pool="app", server="a1", provider="cloud-a") == 0
    assert value(s, up, pool="app", server="a2", provider="cloud-a") == 0
    assert value(s, up, pool="app", server="b1", provider="cloud-b") == 1
    assert value(s, "ninelives_server_weight", pool="app", server="a1") == 2
    assert value(s, "ninelives_server_weight", pool="app", server="b1") == 7
    # Tier 0 has nothing available, so the pool failed over to tier 1.
    assert value(s, "ninelives_pool_active_tier", pool="app") == 1
    assert value(s, "ninelives_pool_available_servers", pool="app") == 1
    assert value(s, "ninelives_pool_no_server_total", pool="app") == 9


def test_pool_with_nothing_available_reports_tier_minus_one(node: FakeNode) -> None:
    pool = node.pools["app"]
    for server in pool.servers:
        pool.set_admin_state(server.name, AdminState.MAINT)
    s = scrape(node)
    assert value(s, "ninelives_pool_active_tier", pool="app") == -1
    assert value(s, "ninelives_pool_available_servers", pool="app") == 0
    assert value(s, "ninelives_server_state", pool="app", server="b1", state="maint") == 1


def test_panic_is_a_gauge(node: FakeNode) -> None:
    pool = node.pools["app"]
    assert value(scrape(node), "ninelives_pool_panic", pool="app") == 0
    for server in pool.servers:
        pool.set_answering(server, True)  # each check got an HTTP 503: down, but answering
        pool.check_result(server, Signal.FALL, "2 checks failed: HTTP 503, expected 200")
    assert pool.panic
    assert value(scrape(node), "ninelives_pool_panic", pool="app") == 1


def test_pool_latency_histogram(node: FakeNode) -> None:
    pool = node.pools["app"]
    pool.latency.observe(0.004)
    pool.latency.observe(0.3)
    s = scrape(node)
    name = "ninelives_pool_request_duration_seconds"
    assert value(s, f"{name}_bucket", pool="app", le="0.005") == 1
    assert value(s, f"{name}_bucket", pool="app", le="0.25") == 1
    assert value(s, f"{name}_bucket", pool="app", le="0.5") == 2
    assert value(s, f"{name}_count", pool="app") == 2
    assert value(s, f"{name}_sum", pool="app") == pytest.approx(0.304)


def test_node_info_and_start_time(node: FakeNode) -> None:
    s = scrape(node)
    assert value(s, "ninelives_node_info", node="lb-1", version=__version__) == 1
    assert value(s, "ninelives_node_start_time_seconds") == 1_700_000_000.5


def test_scrape_reads_counters_live(node: FakeNode) -> None:
    """The collector holds no copies: a second scrape sees counters bumped in between."""
    web = node.listeners[0]
    web.responses[2] = 1
    assert value(scrape(node), "ninelives_requests_total", listener="web", code="2xx") == 1
    web.responses[2] += 41
    assert value(scrape(node), "ninelives_requests_total", listener="web", code="2xx") == 42
