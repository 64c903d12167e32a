"""The benchmark's results: aggregation over rounds, the printed tables, the JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bench_load import WrkRun
from bench_memory import MemoryRun

PROXIES = ("haproxy", "ninelives")
PROTOCOLS = ("http", "tcp")


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@dataclass(slots=True)
class Results:
    settings: dict[str, object]
    runs: list[WrkRun] = field(default_factory=list)
    memory: list[MemoryRun] = field(default_factory=list)
    rss_after_load_kib: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def summary(self, proxy: str, protocol: str) -> dict[str, float] | None:
        runs = [r for r in self.runs if r.proxy == proxy and r.protocol == protocol]
        if not runs:
            return None
        rps = [r.requests_per_s for r in runs]
        return {
            "requests_per_s": mean(rps),
            "p99_ms": mean([r.p99_ms for r in runs]),
            "errors": float(sum(r.errors for r in runs)),
            # (max - min) / mean of req/s: how far to trust a ratio on this machine
            "spread_pct": 100 * (max(rps) - min(rps)) / mean(rps) if mean(rps) else 0.0,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "settings": self.settings,
            "aggregation": "mean over rounds (errors: sum)",
            "runs": [asdict(r) | {"errors": r.errors} for r in self.runs],
            "summary": {
                f"{proxy}/{protocol}": self.summary(proxy, protocol)
                for proxy in PROXIES
                for protocol in PROTOCOLS
            },
            "memory": [asdict(m) | {"per_conn_kib": m.per_conn_kib} for m in self.memory],
            "rss_after_load_kib": self.rss_after_load_kib,
            "failures": self.failures,
        }


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    return f"{value:{spec}}{suffix}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "—"
    return f"{numerator / denominator:.2f}"


def _throughput_row(results: Results, protocol: str) -> str:
    h = results.summary("haproxy", protocol) or {}
    n = results.summary("ninelives", protocol) or {}
    return (
        f"| {protocol} | {_fmt(h.get('requests_per_s'), ',.0f')} | "
        f"{_fmt(n.get('requests_per_s'), ',.0f')} | "
        f"{_ratio(n.get('requests_per_s'), h.get('requests_per_s'))} | "
        f"{_fmt(h.get('p99_ms'), '.2f', ' ms')} | {_fmt(n.get('p99_ms'), '.2f', ' ms')} | "
        f"{_fmt(h.get('errors'), '.0f')}/{_fmt(n.get('errors'), '.0f')} |"
    )


def _memory_row(memory: list[MemoryRun]) -> str:
    by_proxy = {m.proxy: m for m in memory}
    h, n = by_proxy.get("haproxy"), by_proxy.get("ninelives")
    rss_mb = [m.rss_with_conns_kib / 1024 if m else None for m in (h, n)]
    per_conn = [m.per_conn_kib if m else None for m in (h, n)]
    missing = [str(m.idle_conns_wanted - m.idle_conns_accepted) if m else "—" for m in (h, n)]
    return (
        f"| memory, {memory[0].idle_conns_wanted} idle conns | "
        f"{_fmt(rss_mb[0], '.1f', ' MB RSS')} | {_fmt(rss_mb[1], '.1f', ' MB RSS')} | "
        f"{_ratio(rss_mb[1], rss_mb[0])} | "
        f"{_fmt(per_conn[0], '.2f', ' KiB/conn')} | {_fmt(per_conn[1], '.2f', ' KiB/conn')} | "
        f"{missing[0]}/{missing[1]} not accepted |"
    )


def render(results: Results) -> str:
    out = [
        "## raw rounds",
        "",
        "| proxy | test | round | req/s | p50 | p99 | requests | socket errors | non-2xx/3xx |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.runs:
        out.append(
            f"| {r.proxy} | {r.protocol} | {r.round} | {r.requests_per_s:,.0f} | "
            f"{r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {r.requests:,} | {r.socket_errors} | "
            f"{r.non_2xx_3xx} |"
        )
    if results.memory:
        out += [
            "",
            "| proxy | idle conns accepted | RSS before | RSS with conns | "
            "PSS before | PSS with conns | KiB/conn (RSS) | seconds to accept |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in results.memory:
            out.append(
                f"| {m.proxy} | {m.idle_conns_accepted:,}/{m.idle_conns_wanted:,} | "
                f"{m.rss_before_kib / 1024:.1f} MB | {m.rss_with_conns_kib / 1024:.1f} MB | "
                f"{m.pss_before_kib / 1024:.1f} MB | {m.pss_with_conns_kib / 1024:.1f} MB | "
                f"{m.per_conn_kib:.2f} | {m.seconds_to_accept} |"
            )
    if results.rss_after_load_kib:
        after = ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in results.rss_after_load_kib.items())
        out += ["", f"RSS after the load tests: {after}"]

    out += [
        "",
        "## summary (mean of rounds; ratio = ninelives / haproxy)",
        "",
        "| test | haproxy req/s | ninelives req/s | ratio | haproxy p99 | ninelives p99 "
        "| errors (h/n) |",
        "|---|---|---|---|---|---|---|",
    ]
    for protocol in PROTOCOLS:
        out.append(_throughput_row(results, protocol))
    spreads = [
        f"{proxy} {protocol} {summary['spread_pct']:.0f}%"
        for protocol in PROTOCOLS
        for proxy in PROXIES
        if (summary := results.summary(proxy, protocol)) is not None
    ]
    if results.memory:
        out.append(_memory_row(results.memory))
    out += ["", f"round-to-round spread of req/s, (max - min) / mean: {', '.join(spreads)}"]
    load = results.settings.get("loadavg_start"), results.settings.get("loadavg_end")
    out.append(
        f"load average (1 min) at start and end: {load[0]}, {load[1]}"
        f" on {results.settings.get('cpus')} CPUs"
    )
    out.append(f"{results.settings.get('ninelives')}; {results.settings.get('haproxy')}")
    if results.failures:
        out += ["", "failures:", *(f"- {f}" for f in results.failures)]
    return "\n".join(out)
