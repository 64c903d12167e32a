"""The CLI's side of the admin API: calls over HTTP (stdlib only) and a rich status view.

Kept free of click so that it is testable on its own; the CLI turns :class:`AdminError`
into a message and an exit status.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from rich.console import Console
from rich.table import Table
from rich.text import Text

HINT = "is `ninelives run` running? set --admin or NINELIVES_ADMIN"
SWITCHOVER_TIMEOUT = 30.0  # seconds: the node waits up to three leases for the handover
UPTIME_TIMEOUT = 60.0  # seconds: a year of history for a large node takes a moment
STATE_STYLES = {
    "up": "green", "down": "bold red", "drain": "yellow", "maint": "magenta",
    "falling": "yellow", "rising": "cyan", "ejected": "red", "unchecked": "dim",
}


class AdminError(Exception):
    """An admin call failed; the message says why, in words for the operator."""


class AdminClient:
    """Calls the admin API of one node at ``address`` (``host:port`` or an http:// URL)."""

    def __init__(self, address: str, token: str | None, timeout: float = 5.0) -> None:
        self.address = address.removeprefix("http://").rstrip("/")
        self.base = f"http://{self.address}"
        self.token = token
        self.timeout = timeout

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/v1/status")

    def set_state(self, pool: str, server: str, state: str) -> dict[str, Any]:
        return self._call("POST", f"{_server_path(pool, server)}/state", {"state": state})

    def set_weight(self, pool: str, server: str, weight: int) -> dict[str, Any]:
        return self._call("POST", f"{_server_path(pool, server)}/weight", {"weight": weight})

    def uptime(self, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /v1/uptime`` with ``params`` (window, from, to, kind)."""
        path = "/v1/uptime" + (f"?{urlencode(params)}" if params else "")
        return self._call("GET", path, timeout=max(self.timeout, UPTIME_TIMEOUT))

    def slo(self) -> dict[str, Any]:
        """``GET /v1/slo``: every SLO with its budget, burn rates and alerts."""
        return self._call("GET", "/v1/slo", timeout=max(self.timeout, UPTIME_TIMEOUT))

    def reload(self) -> list[str]:
        """Ask the node to read its config again; the changes it made. A refused reload
        raises AdminError listing every problem."""
        changes = self._call("POST", "/v1/reload", {}).get("changes", [])
        return [str(line) for line in changes]

    def switchover(self, to: str | None) -> dict[str, Any]:
        """Ask for a planned handover of the lead; who had it, who has it, how long it took."""
        return self._call("POST", "/v1/switchover", {"to": to},
                          timeout=max(self.timeout, SWITCHOVER_TIMEOUT))

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        request = urllib.request.Request(self.base + path, method=method)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            wait = timeout if timeout is not None else self.timeout
            with urllib.request.urlopen(request, data, timeout=wait) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise AdminError(_http_error(exc)) from None
        except urllib.error.URLError as exc:
            raise AdminError(self._unreachable(exc.reason)) from None
        except (TimeoutError, OSError) as exc:  # a timeout while reading the answer
            raise AdminError(self._unreachable(exc)) from None
        try:
            value = json.loads(payload)
        except ValueError:
            raise AdminError(
                f"the admin API at {self.address} answered something that is not JSON"
            ) from None
        if not isinstance(value, dict):
            raise AdminError(f"the admin API at {self.address} answered {value!r}")
        return value

    def _unreachable(self, reason: object) -> str:
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused"
        elif isinstance(reason, TimeoutError | socket.timeout):
            why = f"no answer within {self.timeout:g}s"
        elif isinstance(reason, socket.gaierror):
            why = f"unknown host ({reason.strerror})"
        elif isinstance(reason, OSError) and reason.strerror:
            why = reason.strerror.lower()
        else:
            why = str(reason)
        return f"cannot reach the admin API at {self.address}: {why} ({HINT})"


def _server_path(pool: str, server: str) -> str:
    return f"/v1/pools/{quote(pool, safe='')}/servers/{quote(server, safe='')}"


def _http_error(exc: urllib.error.HTTPError) -> str:
    try:
        answer = json.loads(exc.read())
        message = answer["error"]
        problems = [str(p) for p in answer.get("problems", [])]
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        message, problems = exc.reason, []
    return "\n".join([*problems, f"{message} (HTTP {exc.code})"])


def parse_target(text: str) -> tuple[str, str]:
    """``"app/a1"`` -> ``("app", "a1")``; raise ValueError naming what was expected."""
    pool, sep, server = text.strip().partition("/")
    if not sep or not pool or not server or "/" in server:
        raise ValueError(f'expected POOL/SERVER, like app/a1, got "{text}"')
    return pool, server


# -- the status view ---------------------------------------------------------------------------


def format_uptime(seconds: float) -> str:
    """``93784`` -> ``"1d 2h 3m"``; under a minute, seconds."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if total < 60:
        return f"{secs}s"
    parts = [(days, "d"), (hours, "h"), (minutes, "m")] if days else [
        (hours, "h"), (minutes, "m"), (secs, "s")
    ]
    return " ".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def render_status(status: dict[str, Any], console: Console) -> None:
    """Print a node's status (``GET /v1/status``) as tables: node, listeners, pools."""
    ready = Text("ready", "green") if status.get("ready") else Text("not ready", "bold red")
    line = Text.assemble(
        ("node ", "dim"), (str(status.get("node", "?")), "bold"),
        ("  version ", "dim"), str(status.get("version", "?")),
        ("  up ", "dim"), format_uptime(float(status.get("uptime_s", 0))),
        "  ", ready,
    )
    console.print(line)

    listeners = Table(title="listeners", title_justify="left")
    for column in ("name", "protocol", "addresses", "pool"):
        listeners.add_column(column)
    for column in ("active", "requests", "5xx"):
        listeners.add_column(column, justify="right")
    for lis in status.get("listeners", []):
        errors = int(lis.get("responses", {}).get("5xx", 0))
        listeners.add_row(
            str(lis.get("name", "")), str(lis.get("protocol", "")),
            " ".join(lis.get("addresses", [])), str(lis.get("pool", "")),
            str(lis.get("active", 0)), str(lis.get("requests", 0)),
            Text(str(errors), "red" if errors else ""),
        )
    console.print(listeners)

    cluster = status.get("cluster")
    if isinstance(cluster, dict):
        console.print(_cluster_table(cluster))

    for pool in status.get("pools", []):
        console.print(_pool_table(pool))


ROLE_STYLES = {"leader": "bold green", "follower": "cyan", "active": "green"}


def _since(when: Any) -> str:
    """A role's start (seconds since the epoch) as local time; "" when not told."""
    if not isinstance(when, int | float) or isinstance(when, bool) or when <= 0:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _cluster_table(cluster: dict[str, Any]) -> Table:
    """Every node of the cluster, its role and why; the title says who leads since when."""
    leader = cluster.get("leader")
    if isinstance(leader, dict):
        leads = f"{leader.get('name', '?')} leads since {_since(leader.get('since'))}"
    elif cluster.get("mode") == "active-active":
        leads = "every node serves (active-active)"
    else:
        leads = "nobody leads"
    title = f"cluster ({cluster.get('mode', '?')}): {leads}"
    vip = cluster.get("vip")
    if isinstance(vip, dict):
        held = "held here" if vip.get("held") else "not held here"
        title += f"; VIP {vip.get('address', '?')} on {vip.get('interface', '?')} {held}"
    if cluster.get("preempt"):
        title += "; preempt on here"
    if cluster.get("error"):
        title += f"  ERROR: {cluster['error']}"
    table = Table(title=title, title_justify="left")
    for column in ("node", "address", "role", "priority", "health", "since", "reason"):
        table.add_column(column)
    for member in cluster.get("members", []):
        role = str(member.get("role", "?"))
        name = str(member.get("name", ""))
        health = str(member.get("health", ""))
        table.add_row(
            name + (" (this node)" if name == cluster.get("me") else ""),
            str(member.get("address", "")), Text(role, ROLE_STYLES.get(role, "")),
            str(member.get("priority", "")),
            Text(health, "green" if health == "healthy" else "bold red"),
            _since(member.get("since")), str(member.get("reason", "")),
        )
    return table


def _weight(server: dict[str, Any]) -> str:
    """The weight, with the share of it taken while in slow start: ``2 (35%)``."""
    ramp = server.get("ramp", 1.0)
    weight = str(server.get("weight", ""))
    return weight if ramp is None or ramp >= 1.0 else f"{weight} ({ramp * 100:.0f}%)"


def _pool_table(pool: dict[str, Any]) -> Table:
    tier = pool.get("active_tier")
    title = (
        f"pool {pool.get('name', '?')} {pool.get('state', '?')}: {pool.get('reason', '')}  "
        f"({pool.get('balance', '?')}, {pool.get('available', 0)} available, "
        f"active tier {'none' if tier is None else tier})"
    )
    if pool.get("panic"):
        title += f"  PANIC: {pool.get('panic_reason', '')}"
    if pool.get("hash_excluded"):
        title += f"  out of the hash table (down on another node): " \
                 f"{', '.join(pool['hash_excluded'])}"
    table = Table(title=title, title_justify="left")
    for column in ("tier", "provider", "server", "address", "state"):
        table.add_column(column)
    for column in ("weight", "active", "requests"):
        table.add_column(column, justify="right")
    table.add_column("reason")
    for index, group in enumerate(pool.get("tiers", [])):
        for srv in group.get("servers", []):
            state = str(srv.get("state", "?"))
            table.add_row(
                str(index), str(group.get("provider", "")), str(srv.get("name", "")),
                str(srv.get("address", "")), Text(state, STATE_STYLES.get(state, "")),
                _weight(srv), str(srv.get("active", 0)),
                str(srv.get("requests", 0)), str(srv.get("reason", "")),
            )
    return table
