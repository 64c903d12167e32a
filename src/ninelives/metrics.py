"""Prometheus metrics of a node, built at scrape time from the plain counters it keeps.

The data plane only increments ints on :class:`~ninelives.listener.ListenerStats`,
:class:`~ninelives.pool.Pool` and :class:`~ninelives.pool.Server`; nothing from
prometheus_client is touched per request. :class:`NodeCollector` reads those counters when
``/metrics`` is scraped and turns them into metric families.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ninelives import __version__
from ninelives.pool import LATENCY_BUCKETS, LatencyHistogram
from ninelives.states import Health
from ninelives.units import format_duration

if TYPE_CHECKING:
    from ninelives.listener import ListenerStats
    from ninelives.pool import Pool
    from ninelives.uptime.slo import SloStatus

# Label values for ``responses[k]``: k = 0 is "no response", 1..5 are status classes.
CODES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
SERVER_STATES = (*(h.value for h in Health), "drain", "maint")
# repr() of these bounds is what prometheus_client's own histograms write ("0.0005", "1.0").
_BUCKET_LABELS = (*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf")


class _Node(Protocol):
    """The part of a node the metrics read (``ninelives.admin.NodeLike`` is a superset)."""

    @property
    def name(self) -> str: ...
    @property
    def pools(self) -> dict[str, Pool]: ...
    @property
    def listeners(self) -> Sequence[ListenerStats]: ...
    @property
    def started_at(self) -> float: ...


def histogram_buckets(latency: LatencyHistogram) -> list[tuple[str, float]]:
    """Per-bucket counts (plus overflow) as Prometheus wants them: cumulative, ending at +Inf."""
    buckets = []
    running = 0
    for label, count in zip(_BUCKET_LABELS, latency.counts, strict=True):
        running += count
        buckets.append((label, float(running)))
    return buckets


class NodeCollector(Collector):
    """Collects every ``ninelives_*`` family of one node."""

    def __init__(self, node: _Node) -> None:
        self.node = node

    def collect(self) -> Iterable[Metric]:
        yield from self.node_families()
        yield from self.listener_families()
        yield from self.pool_families()

    def node_families(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "ninelives_node_info", "This node's name and ninelives version.",
            labels=["node", "version"],
        )
        info.add_metric([self.node.name, __version__], 1)
        yield info
        yield GaugeMetricFamily(
            "ninelives_node_start_time_seconds", "When this node started, in Unix time.",
            value=self.node.started_at,
        )

    def listener_families(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "ninelives_requests",
            "Requests answered to clients by status class (none: ended without a response).",
            labels=["listener", "code"],
        )
        duration = HistogramMetricFamily(
            "ninelives_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            labels=["listener"],
        )
        active = GaugeMetricFamily(
            "ninelives_listener_connections_active", "Client connections open now.",
            labels=["listener"],
        )
        connections = CounterMetricFamily(
            "ninelives_listener_connections", "Client connections accepted.",
            labels=["listener"],
        )
        rejected = CounterMetricFamily(
            "ninelives_listener_rejected", "Malformed requests answered 400.",
            labels=["listener"],
        )
        for lis in self.node.listeners:
            for code, count in zip(CODES, lis.responses, strict=True):
                requests.add_metric([lis.name, code], count)
            duration.add_metric(
                [lis.name], histogram_buckets(lis.latency), lis.latency.sum
            )
            active.add_metric([lis.name], lis.active)
            connections.add_metric([lis.name], lis.connections)
            rejected.add_metric([lis.name], lis.rejected)
        yield from (requests, duration, active, connections, rejected)

    def pool_families(self) -> Iterable[Metric]:
        f = _PoolFamilies()
        for pool in self.node.pools.values():
            f.add_pool(pool)
        yield from f.all()


class _PoolFamilies:
    """The pool and server families of one scrape, filled pool by pool."""

    def __init__(self) -> None:
        server = ["pool", "server"]
        with_provider = [*server, "provider"]
        self.server_requests = CounterMetricFamily(
            "ninelives_server_requests", "Requests sent to a server, by status class.",
            labels=[*with_provider, "code"],
        )
        self.provider_requests = CounterMetricFamily(
            "ninelives_provider_requests",
            "Requests sent to the servers of a provider, by status class.",
            labels=["pool", "provider", "code"],
        )
        self.failures = CounterMetricFamily(
            "ninelives_server_failures",
            "Requests or connections to a server that failed (connect, reset, timeout).",
            labels=with_provider,
        )
        self.active = GaugeMetricFamily(
            "ninelives_server_active", "Requests (http) or connections (tcp) in flight.",
            labels=server,
        )
        self.up = GaugeMetricFamily(
            "ninelives_server_up", "1 when new clients may be sent to the server.",
            labels=with_provider,
        )
        self.state = GaugeMetricFamily(
            "ninelives_server_state", "1 for the server's current state, 0 for the others.",
            labels=[*server, "state"],
        )
        self.weight = GaugeMetricFamily(
            "ninelives_server_weight", "The server's current weight.", labels=server
        )
        self.duration = HistogramMetricFamily(
            "ninelives_pool_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by pool.",
            labels=["pool"],
        )
        self.available = GaugeMetricFamily(
            "ninelives_pool_available_servers", "Servers new clients may be sent to.",
            labels=["pool"],
        )
        self.active_tier = GaugeMetricFamily(
            "ninelives_pool_active_tier", "The tier taking traffic (-1: none).",
            labels=["pool"],
        )
        self.panic = GaugeMetricFamily(
            "ninelives_pool_panic",
            "1 while too few servers pass their checks and the pool balances over those "
            "that answer them (panic).",
            labels=["pool"],
        )
        self.no_server = CounterMetricFamily(
            "ninelives_pool_no_server",
            "Requests answered 503 because no server was available.",
            labels=["pool"],
        )
        self.ejections = CounterMetricFamily(
            "ninelives_server_ejections",
            "Times live traffic ejected the server (outlier detection).",
            labels=server,
        )
        self.retries = CounterMetricFamily(
            "ninelives_pool_retries",
            "Requests sent again to another server, by cause "
            "(connect-failure, timeout, reset, or the status).",
            labels=["pool", "cause"],
        )
        self.retry_outcomes = CounterMetricFamily(
            "ninelives_pool_retry_outcomes",
            "How retried requests ended (answered, failed), and retries refused "
            "(budget: the retry budget was spent; exhausted: no attempts left).",
            labels=["pool", "outcome"],
        )

    def add_pool(self, pool: Pool) -> None:
        name = pool.name
        by_provider: dict[str, list[int]] = {}
        for s in pool.servers:
            labels = [name, s.name, s.provider]
            totals = by_provider.setdefault(s.provider, [0] * len(CODES))
            for index, (code, count) in enumerate(zip(CODES, s.responses, strict=True)):
                self.server_requests.add_metric([*labels, code], count)
                totals[index] += count
            self.failures.add_metric(labels, s.failures)
            self.active.add_metric([name, s.name], s.active)
            self.up.add_metric(labels, 1 if s.is_available() else 0)
            current = s.state
            for state in SERVER_STATES:
                self.state.add_metric([name, s.name, state], 1 if state == current else 0)
            self.weight.add_metric([name, s.name], s.weight)
            self.ejections.add_metric([name, s.name], s.times_ejected)
        for provider, totals in by_provider.items():
            for code, count in zip(CODES, totals, strict=True):
                self.provider_requests.add_metric([name, provider, code], count)
        self.duration.add_metric([name], histogram_buckets(pool.latency), pool.latency.sum)
        self.available.add_metric([name], len(pool.candidates))
        self.active_tier.add_metric([name], -1 if pool.active_tier is None else pool.active_tier)
        self.panic.add_metric([name], 1 if pool.panic else 0)
        self.no_server.add_metric([name], pool.no_server)
        for cause, count in sorted(pool.retries.items()):
            self.retries.add_metric([name, cause], count)
        for outcome, count in pool.retry_outcomes.items():
            self.retry_outcomes.add_metric([name, outcome], count)

    def all(self) -> list[Metric]:
        return [
            self.server_requests, self.provider_requests, self.failures, self.active, self.up,
            self.state, self.weight, self.duration, self.available, self.active_tier,
            self.panic, self.no_server, self.ejections, self.retries, self.retry_outcomes,
        ]



class SloCollector(Collector):
    """The SLOs as the node's watch last evaluated them (every 10 s): a scrape reads no
    database. Nothing is exported for an SLO never evaluated or a value not known yet
    (no request in the window): an absent series, not a made-up 0 or 1."""

    def __init__(self, latest: Callable[[], Sequence[SloStatus]]) -> None:
        self.latest = latest

    def collect(self) -> Iterable[Metric]:
        target = GaugeMetricFamily(
            "ninelives_slo_target", "The SLO's target (0.9995 for 99.95%)", labels=["slo"])
        sli = GaugeMetricFamily(
            "ninelives_slo_availability",
            "Good over valid (requests or seconds) over the SLO's window", labels=["slo"])
        left = GaugeMetricFamily(
            "ninelives_slo_error_budget_left_ratio",
            "Share of the error budget left over the SLO's window (below 0: overspent)",
            labels=["slo"])
        burn = GaugeMetricFamily(
            "ninelives_slo_burn_rate",
            "Bad share over (1 - target), over a window of the burn-rate alerts",
            labels=["slo", "window"])
        firing = GaugeMetricFamily(
            "ninelives_slo_alert_firing", "1 while the SLO's alert of that severity fires",
            labels=["slo", "severity"])
        for status in self.latest():
            name = status.objective.name
            target.add_metric([name], status.objective.target)
            if status.sli.ratio is not None:
                sli.add_metric([name], status.sli.ratio)
            if status.budget_left_ratio is not None:
                left.add_metric([name], status.budget_left_ratio)
            rates: dict[float, float | None] = {}
            for b in status.burns:
                rates[b.long_s] = b.long_rate
                rates[b.short_s] = b.short_rate
            for window, rate in sorted(rates.items()):
                if rate is not None:
                    burn.add_metric([name, format_duration(window)], rate)
            for severity, is_firing, _ in status.alerts:
                firing.add_metric([name, severity], 1.0 if is_firing else 0.0)
        yield from (target, sli, left, burn, firing)
