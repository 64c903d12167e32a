"""The ``ninelives`` command line. Only this module exits the process."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ninelives import __version__
from ninelives.http import build as http_build

if TYPE_CHECKING:
    from ninelives.client import AdminClient
    from ninelives.config import Config

ADMIN_HELP = "admin API address HOST:PORT (default: $NINELIVES_ADMIN or 127.0.0.1:9901)"
TOKEN_HELP = "admin token (default: $NINELIVES_TOKEN)"


@click.group()
@click.version_option(
    __version__, prog_name="ninelives",
    message=f"%(prog)s %(version)s (data plane: {http_build()})",
)
def main() -> None:
    """High availability for any TCP or HTTP service."""


def _load(config: Path) -> Config:
    from ninelives.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click.echo(f"{config}: {len(exc.problems)} problem(s); nothing was started", err=True)
        sys.exit(1)


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def run(config: Path, log_level: str) -> None:
    """Start a node in the foreground; print one readiness line once every listener is bound."""
    import uvloop

    from ninelives.node import NodeStartError, serve

    cfg = _load(config)
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        uvloop.run(serve(cfg, config.resolve()))
    except NodeStartError as exc:
        click.echo(f"ninelives: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
def check(config: Path) -> None:
    """Validate CONFIG: every problem with its path; exit 1 if there is any."""
    _load(config)
    click.echo(f"{config}: ok")


@main.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editors)."""
    from ninelives.config import config_json_schema

    click.echo(json.dumps(config_json_schema(), indent=2))


def _client(admin: str | None, token: str | None) -> AdminClient:
    from ninelives.client import AdminClient

    address = admin or os.environ.get("NINELIVES_ADMIN") or "127.0.0.1:9901"
    return AdminClient(address, token or os.environ.get("NINELIVES_TOKEN"))


def _call(fn: Callable[[], None]) -> None:
    from ninelives.client import AdminError

    try:
        fn()
    except AdminError as exc:
        click.echo(f"ninelives: {exc}", err=True)
        sys.exit(1)
    except ValueError as exc:
        click.echo(f"ninelives: {exc}", err=True)
        sys.exit(2)


@main.command()
@click.option("--admin", help=ADMIN_HELP)
@click.option("--token", help=TOKEN_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the raw JSON status")
def status(admin: str | None, token: str | None, as_json: bool) -> None:
    """Pools, servers and listeners of a running node."""
    from rich.console import Console

    from ninelives.client import render_status

    def show() -> None:
        client = _client(admin, token)
        data = client.status()
        if as_json:
            click.echo(json.dumps(data, indent=2))
        else:
            render_status(data, Console())

    _call(show)


def _state_command(state: str, doc: str) -> None:
    @main.command(name={"ready": "enable"}.get(state, state), help=doc)
    @click.argument("target")
    @click.option("--admin", help=ADMIN_HELP)
    @click.option("--token", help=TOKEN_HELP)
    def command(target: str, admin: str | None, token: str | None) -> None:
        from ninelives.client import parse_target

        def change() -> None:
            pool, server = parse_target(target)
            client = _client(admin, token)
            result = client.set_state(pool, server, state)
            click.echo(f"{pool}/{server}: {result.get('state', state)}")

        _call(change)


_state_command("drain", "POOL/SERVER takes no new clients; requests in flight finish.")
_state_command("ready", "POOL/SERVER is back in service (undo drain or maint).")
_state_command("maint", "POOL/SERVER takes no traffic at all (maintenance).")


@main.command()
@click.argument("target")
@click.argument("weight", type=click.IntRange(0, 256))
@click.option("--admin", help=ADMIN_HELP)
@click.option("--token", help=TOKEN_HELP)
def weight(target: str, weight: int, admin: str | None, token: str | None) -> None:
    """Set the weight (0-256) of POOL/SERVER at runtime."""
    from ninelives.client import parse_target

    def change() -> None:
        pool, server = parse_target(target)
        client = _client(admin, token)
        result = client.set_weight(pool, server, weight)
        click.echo(f"{pool}/{server}: weight {result.get('weight', weight)}")

    _call(change)


@main.command()
@click.option("--admin", help=ADMIN_HELP)
@click.option("--token", help=TOKEN_HELP)
def reload(admin: str | None, token: str | None) -> None:
    """Hot reload: the node reads its config file again (as SIGHUP does). A bad config
    changes nothing; its problems are printed."""

    def ask() -> None:
        for line in _client(admin, token).reload():
            click.echo(line)

    _call(ask)


@main.command()
@click.option("--to", "to", metavar="NODE", help="the node to hand the lead to "
              "(default: any other ready node)")
@click.option("--admin", help=ADMIN_HELP)
@click.option("--token", help=TOKEN_HELP)
def switchover(to: str | None, admin: str | None, token: str | None) -> None:
    """Planned handover: the leader steps down (VIP removed, lease released) and NODE takes
    the lead. Asked of any node of the cluster."""

    def ask() -> None:
        done = _client(admin, token).switchover(to)
        click.echo(f"{done.get('from')} -> {done.get('to')} in {done.get('took_s')}s "
                   f"(token {done.get('token')})")

    _call(ask)


@main.command()
@click.option("--window", help="how far back from now: 1h, 24h, 7d, 30d, 1y (default 30d)")
@click.option("--from", "start", help="from this time (2025-06-01T00:00:00Z, UTC unless "
              "said) instead of --window")
@click.option("--to", "end", help="with --from: up to this time (default now)")
@click.option("--kind", multiple=True,
              type=click.Choice(["node", "cluster", "listener", "pool", "provider", "server"]),
              help="only entities of this kind (repeatable)")
@click.option("--incidents", is_flag=True, help="list the incidents (with their causes)")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json", "csv"]))
@click.option("--admin", help=ADMIN_HELP)
@click.option("--token", help=TOKEN_HELP)
def uptime(
    window: str | None, start: str | None, end: str | None, kind: tuple[str, ...],
    incidents: bool, fmt: str, admin: str | None, token: str | None,
) -> None:
    """Availability, downtime, incidents, MTBF/MTTR and nines of every listener, pool,
    provider and server over a window (from the node's uptime history)."""
    from rich.console import Console

    from ninelives.uptime.render import incidents_table, uptime_csv, uptime_table

    params = [(key, value) for key, value in (("window", window), ("from", start),
                                               ("to", end)) if value is not None]
    params += [("kind", k) for k in kind]

    def show() -> None:
        report = _client(admin, token).uptime(params)
        if fmt == "json":
            click.echo(json.dumps(report, indent=2))
        elif fmt == "csv":
            click.echo(uptime_csv(report, incidents), nl=False)
        else:
            Console().print(incidents_table(report) if incidents else uptime_table(report))

    _call(show)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print the raw JSON")
@click.option("--admin", help=ADMIN_HELP)
@click.option("--token", help=TOKEN_HELP)
def slo(as_json: bool, admin: str | None, token: str | None) -> None:
    """The SLOs (uptime.slos) of a running node: the SLI over each window, the error
    budget left, the burn rates of the alert windows, and the alerts firing."""
    from rich.console import Console

    from ninelives.uptime.render_slo import slo_table

    def show() -> None:
        report = _client(admin, token).slo()
        if as_json:
            click.echo(json.dumps(report, indent=2))
        else:
            Console().print(slo_table(report))

    _call(show)


@main.command()
@click.argument("availability", required=False)
@click.option("--downtime", help="the inverse: this much downtime (5m, 1h30m) ...")
@click.option("--per", default="year", show_default=True,
              help="... per year, month (30 days), week, day or a duration like 90d")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def nines(availability: str | None, downtime: str | None, per: str, as_json: bool) -> None:
    """The downtime an availability allows (nines 99.99, or 99.99%) per year, 30-day
    month, week and day; or the availability a downtime leaves (--downtime 5m --per year).
    Needs no node."""
    from decimal import Decimal

    from ninelives.units import format_duration, parse_duration
    from ninelives.uptime import nines as arithmetic
    from ninelives.uptime.render import budget_lines
    from ninelives.uptime.report import parse_window

    if (availability is None) == (downtime is None):
        raise click.UsageError("give an availability (nines 99.99) or --downtime (and --per)")
    try:
        if availability is not None:
            value = arithmetic.parse_availability(availability)
            if as_json:
                click.echo(json.dumps({
                    "availability": float(value), "nines": arithmetic.nines(value),
                    "downtime_s": {
                        period: float(arithmetic.allowed_downtime(value, seconds))
                        for period, seconds in arithmetic.PERIODS.items()
                    },
                }, indent=2))
            else:
                click.echo("\n".join(budget_lines(value)))
            return
        assert downtime is not None
        period = arithmetic.PERIODS.get(per.strip().lower()) or parse_window(per)
        down = Decimal(str(parse_duration(downtime)))
        value = arithmetic.availability_for(down, Decimal(str(period)))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    count = arithmetic.nines(value)
    if as_json:
        click.echo(json.dumps({"downtime_s": float(down), "period_s": float(period),
                               "availability": float(value), "nines": count}, indent=2))
        return
    how_many = "no downtime at all" if count is None else f"{count:.2f} nines"
    click.echo(f"{format_duration(float(down))} down per {format_duration(float(period))} is "
               f"{arithmetic.format_percent(value)} ({how_many})")


@main.command()
@click.option("--requests", "total", default=3000, show_default=True,
              help="requests to send through the node")
@click.option("--serve", is_flag=True, help="keep the node and backends running afterwards")
def demo(total: int, serve: bool) -> None:
    """A local node in front of demo backends it starts: traffic, a failure, what clients saw."""
    import uvloop

    from ninelives.demo import run_demo

    sys.exit(uvloop.run(run_demo(total=total, keep_serving=serve)))


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from ninelives.units import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--fault", type=click.Choice(["kill", "hang", "slow", "flap"]), default="kill",
              show_default=True, help="what happens to the server")
@click.option("--server", help="[POOL/]NAME of the server to fault (default: the first one)")
@click.option("--listener", help="listener to load (default: the first one)")
@click.option("--before", callback=_duration, metavar="DURATION", default="2s", show_default=True,
              help="load before the fault")
@click.option("--during", callback=_duration, metavar="DURATION", default="3s", show_default=True,
              help="how long the server is faulty")
@click.option("--after", callback=_duration, metavar="DURATION", default="3s", show_default=True,
              help="load after the server is whole again")
@click.option("--back-within", callback=_duration, metavar="DURATION", default="15s",
              show_default=True,
              help="wait at most this long after the fault for the server's first answer")
@click.option("--delay", callback=_duration, metavar="DURATION", default="200ms", show_default=True,
              help="slow: latency added to each answer")
@click.option("--flaps", type=click.IntRange(1, 100), default=3, show_default=True,
              help="flap: down/up cycles")
@click.option("--connections", type=click.IntRange(1, 512), default=8, show_default=True,
              help="keep-alive connections (more open while all of these are busy)")
@click.option("--rate", type=click.FloatRange(min=0.1), default=400.0, show_default=True,
              help="GET requests per second, each due on time whatever the earlier ones met")
@click.option("--requests", "max_requests", type=click.IntRange(1), default=100_000,
              show_default=True, help="stop after this many requests")
@click.option("--timeout", callback=_duration, metavar="DURATION", default="5s", show_default=True,
              help="a request without a whole answer by then failed")
@click.option("--running", is_flag=True,
              help="the backends run already: start none, fault the one with --pid")
@click.option("--pid", type=int, help="with --running: the pid of the server to fault")
@click.option("--log-dir", type=click.Path(path_type=Path),
              help="keep the node's and the backends' logs here")
@click.option("--max-failures", type=click.IntRange(0),
              help="exit 1 when more requests than this failed")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def drill(
    config: Path, fault: str, server: str | None, listener: str | None, before: float,
    during: float, after: float, back_within: float, delay: float, flaps: int,
    connections: int, rate: float, max_requests: int, timeout: float, running: bool,
    pid: int | None, log_dir: Path | None, max_failures: int | None, as_json: bool,
) -> None:
    """A fault drill: start the node and its backends, load a listener, inject one fault
    into one server, and report what the clients saw."""
    import uvloop
    from rich.console import Console

    from ninelives.drill.faults import FaultPlan
    from ninelives.drill.processes import ProcessError
    from ninelives.drill.report import render
    from ninelives.drill.runner import DrillError, DrillOptions, interruptible, run_drill
    from ninelives.drill.scenario import Timing

    cfg = _load(config)
    try:
        options = DrillOptions(
            fault=FaultPlan(fault, during, delay, flaps),  # type: ignore[arg-type]
            timing=Timing(before, after, max(back_within, after)),
            server=server, listener=listener, running=running, pid=pid,
            connections=connections, rate=rate, max_requests=max_requests, timeout=timeout,
            log_dir=log_dir,
        )
        report = uvloop.run(interruptible(run_drill(config, cfg, options)))
    except (DrillError, ProcessError, ValueError) as exc:
        click.echo(f"ninelives drill: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("ninelives drill: interrupted; every process it started was stopped", err=True)
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        console = Console()
        render(report, console if console.is_terminal else Console(width=120))
    if max_failures is not None and report.failed > max_failures:
        sys.exit(1)


@main.command()
@click.argument("arch", type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json"]))
@click.option("--simulate", "years", type=click.IntRange(min=2),
              help="also simulate this many system-years (Monte Carlo)")
@click.option("--seed", type=int, help="seed of the simulation (default: a fresh one)")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False),
              help="write the block diagram and the contribution bars to this SVG file")
@click.option("--observed", is_flag=True,
              help="compare components with pool: to their servers' uptime history (from the "
                   "admin API, or with --state-dir or --config from the node's state directory)")
@click.option("--window", default="30d", show_default=True, help="with --observed: how far back")
@click.option("--admin", help=ADMIN_HELP)
@click.option("--token", help=TOKEN_HELP)
@click.option("--state-dir", type=click.Path(path_type=Path),
              help="with --observed: read the history in this node state directory (its "
                   "state_dir), not over the admin API; safe while the node runs")
@click.option("--config", "node_config", type=click.Path(path_type=Path),
              help="with --observed: the node's config: the history in its state_dir (unless "
                   "--state-dir), its maintenance windows taken out as the admin API does")
def model(
    arch: Path, fmt: str, years: int | None, seed: int | None, plot: Path | None,
    observed: bool, window: str, admin: str | None, token: str | None,
    state_dir: Path | None, node_config: Path | None,
) -> None:
    """Predict the availability of an architecture (ARCH.yaml: components and their
    redundancy) and show which block costs the most downtime. Needs no node; --observed
    reads a node's uptime history over its admin API or from its state directory."""
    import numpy as np
    from rich.console import Console

    from ninelives.model.load import ArchError, load_arch
    from ninelives.model.observed import Observation, compare
    from ninelives.model.plot import svg
    from ninelives.model.report import predict, render, render_observed, to_json
    from ninelives.model.simulate import simulate

    if (state_dir or node_config) and not observed:
        raise click.UsageError("--state-dir and --config go with --observed")
    try:
        root = load_arch(arch)
    except ArchError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click.echo(f"{arch}: {len(exc.problems)} problem(s)", err=True)
        sys.exit(1)
    observations: list[Observation] = []

    def fetch() -> None:
        report = _client(admin, token).uptime([("window", window), ("kind", "server")])
        observations.extend(compare(root, report))

    if observed and (state_dir or node_config):
        observations.extend(compare(root, _history(state_dir, node_config, window)))
    elif observed:
        _call(fetch)
    prediction = predict(root)
    simulated = None if years is None else simulate(root, years, np.random.default_rng(seed))
    if plot is not None:
        try:
            plot.write_text(svg(root, prediction), encoding="utf-8")
        except OSError as exc:
            click.echo(f"ninelives model: cannot write {plot}: {exc.strerror or exc}", err=True)
            sys.exit(2)
    if fmt == "json":
        answer = to_json(prediction, simulated)
        if observed:
            answer["observed"] = [item.to_json() for item in observations]
        click.echo(json.dumps(answer, indent=2))
        return
    console = Console()
    console = console if console.is_terminal else Console(width=140)
    console.print(render(prediction, simulated))
    if observed:
        console.print(render_observed(observations, window))

def _history(state_dir: Path | None, config: Path | None, window: str) -> dict[str, Any]:
    """The servers' part of ``GET /v1/uptime?window=WINDOW``, read from the node's state
    directory as the node itself reads it (with its config: its servers and maintenance
    windows; without: every server in the history, no maintenance window)."""
    import sqlite3
    import time

    from ninelives.uptime.recorder import configured
    from ninelives.uptime.report import Topology, uptime_report, window_from
    from ninelives.uptime.schema import StoreError
    from ninelives.uptime.store import open_history

    cfg = None if config is None else _load(config)
    place = state_dir if state_dir is not None or cfg is None else cfg.node.state_dir
    assert place is not None  # the caller gave a state_dir or a config
    now = time.time()
    try:
        start, end = window_from({"window": window}, now)
        store = open_history(place)
        topology = Topology("", (), ()) if cfg is None else configured(cfg)
        rules = [] if cfg is None else cfg.uptime.rules()
        return uptime_report(store, topology, rules, start, end, now, ["server"])
    except (ValueError, StoreError) as exc:
        click.echo(f"ninelives model: {exc}", err=True)
    except sqlite3.Error as exc:
        click.echo(f"ninelives model: cannot read the uptime history in {place}: {exc}",
                   err=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
