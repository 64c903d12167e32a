"""Checks that span several parts of the config: references, unique names, bind clashes.

They read the raw (parsed YAML) data, defensively, so the loader can run them even when
some fields failed validation and report every problem in one go. The same function
checks a validated Config (through its ``model_dump``) built in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ninelives.address import Address, parse_address
from ninelives.config.cluster import cluster_problems
from ninelives.config.fields import Loc, as_name, format_loc
from ninelives.units import parse_duration

_DEFAULT_ADMIN = "127.0.0.1:9901"
_BALANCES = ("roundrobin", "leastconn", "random2", "hash", "first")
BACKUP_IN_TIERS = (
    "backup is only for the servers shorthand; "
    "in tiers the tier order already says which servers are backups"
)


# The algorithms that give servers shares by weight, so that slow start can ramp one.
RAMPED_BALANCES = ("roundrobin", "leastconn", "random2")


def hash_on_needs_hash(balance: str) -> str:
    return f"only with balance: hash, got balance: {balance}"


def slow_start_needs_shares(balance: str) -> str:
    why = (
        "hash keeps every key on its server" if balance == "hash"
        else "first sends everything to one server"
    )
    return (
        f"only with balance roundrobin, leastconn or random2 ({why}); "
        f"got balance: {balance}, set slow_start: 0s or leave it out"
    )
_WILDCARDS = ("0.0.0.0", "::")


def cross_field_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    pools = data.get("pools")
    pool_names = sorted(str(as_name(k)) for k in pools) if isinstance(pools, Mapping) else None
    listeners = data.get("listeners")
    if isinstance(listeners, list):
        problems += _listener_names(listeners)
        if pool_names is not None:
            problems += _pool_references(listeners, pool_names)
        problems += _bind_clashes(data.get("admin"), listeners)
    if isinstance(pools, Mapping):
        for pool_name, pool in pools.items():
            if isinstance(pool, Mapping):
                problems += _server_names(pool_name, pool)
                problems += _pool_options(pool_name, pool)
    cluster = data.get("cluster")
    if isinstance(cluster, Mapping):
        problems += [(("cluster", *loc), text) for loc, text in cluster_problems(cluster)]
    uptime = data.get("uptime")
    if isinstance(uptime, Mapping) and isinstance(pools, Mapping):
        problems += _maintenance_references(uptime.get("maintenance"), pools, listeners)
        problems += _slo_references(uptime.get("slos"), pools, listeners)
    return problems


def _slo_references(slos: Any, pools: Mapping[Any, Any], listeners: Any) -> list[tuple[Loc, str]]:
    """An SLO names a pool or listener that exists, and its name is unique."""
    problems: list[tuple[Loc, str]] = []
    pool_names = sorted(str(as_name(k)) for k in pools)
    listener_names = _names_of_listeners(listeners)
    first: dict[str, int] = {}
    for i, slo in _mappings(slos):
        loc: Loc = ("uptime", "slos", i)
        name = as_name(slo.get("name"))
        if name is not None and name in first:
            problems.append(((*loc, "name"), f'duplicate SLO name "{name}" '
                                             f"(also uptime.slos[{first[name]}])"))
        elif name is not None:
            first[name] = i
        problems += _unknown_names(loc, slo, pool_names, listener_names)
    return problems


def _maintenance_references(
    windows: Any, pools: Mapping[Any, Any], listeners: Any
) -> list[tuple[Loc, str]]:
    """A maintenance window names a pool, server or listener that exists."""
    problems: list[tuple[Loc, str]] = []
    pool_names = {str(as_name(k)): v for k, v in pools.items()}
    listener_names = _names_of_listeners(listeners)
    for i, window in _mappings(windows):
        loc: Loc = ("uptime", "maintenance", i)
        problems += _unknown_names(loc, window, sorted(pool_names), listener_names)
        server = window.get("server")
        if isinstance(server, str) and server.count("/") == 1:
            pool_name, server_name = server.split("/")
            servers = _servers_of(pool_names.get(pool_name))
            if pool_name not in pool_names:
                problems.append(((*loc, "server"), f'no pool named "{pool_name}" '
                                                   f"(pools: {', '.join(sorted(pool_names))})"))
            elif server_name not in servers:
                problems.append(((*loc, "server"), f'no server named "{server_name}" in pool '
                                                   f"{pool_name} (servers: {', '.join(servers)})"))
    return problems


def _servers_of(pool: Any) -> list[str]:
    if not isinstance(pool, Mapping):
        return []
    tiers = _mappings(pool.get("tiers"))
    lists = [pool.get("servers")] + [tier.get("servers") for _, tier in tiers]
    return [
        str(as_name(server.get("name"))) for servers in lists for _, server in _mappings(servers)
        if as_name(server.get("name")) is not None
    ]


def _names_of_listeners(listeners: Any) -> list[str]:
    return sorted(
        str(as_name(item.get("name"))) for _, item in _mappings(listeners)
        if as_name(item.get("name")) is not None
    )


def _unknown_names(
    loc: Loc, item: Mapping[str, Any], pool_names: list[str], listener_names: list[str]
) -> list[tuple[Loc, str]]:
    """The ``pool`` and ``listener`` an uptime entry names, when no such one exists."""
    problems: list[tuple[Loc, str]] = []
    pool = as_name(item.get("pool"))
    if pool is not None and pool not in pool_names:
        problems.append(((*loc, "pool"), f'no pool named "{pool}" '
                                         f"(pools: {', '.join(pool_names)})"))
    listener = as_name(item.get("listener"))
    if listener is not None and listener not in listener_names:
        problems.append(((*loc, "listener"), f'no listener named "{listener}" '
                                             f"(listeners: {', '.join(listener_names)})"))
    return problems


def _mappings(items: Any) -> list[tuple[int, Mapping[str, Any]]]:
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, Mapping)]


def _listener_names(listeners: list[Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    first: dict[str, int] = {}
    for i, listener in _mappings(listeners):
        name = as_name(listener.get("name"))
        if name is None:
            continue
        if name in first:
            problems.append(
                (("listeners", i, "name"), f'duplicate listener name "{name}" '
                 f"(also listeners[{first[name]}])")
            )
        else:
            first[name] = i
    return problems


def _pool_references(listeners: list[Any], pool_names: list[str]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    known = ", ".join(pool_names)

    def check(loc: Loc, value: Any) -> None:
        pool = as_name(value)
        if pool is not None and pool not in pool_names:
            problems.append((loc, f'no pool named "{pool}" (pools: {known})'))

    for i, listener in _mappings(listeners):
        check(("listeners", i, "pool"), listener.get("pool"))
        for r, route in _mappings(listener.get("routes")):
            check(("listeners", i, "routes", r, "pool"), route.get("pool"))
    return problems


def _address(value: Any) -> Address | None:
    if isinstance(value, Address):
        return value
    try:
        return parse_address(value) if isinstance(value, str) else None
    except ValueError:
        return None  # reported by field validation


def _clash(a: Address, b: Address) -> bool:
    # Two listeners on one address would both bind with SO_REUSEPORT and split the traffic
    # silently; a wildcard bind covers every address on its port the same way.
    if a.port != b.port or a.port == 0:
        return False
    return a.host == b.host or a.host in _WILDCARDS or b.host in _WILDCARDS


def _bind_clashes(admin: Any, listeners: list[Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    taken: list[tuple[Address, str]] = []
    admin_listen = admin.get("listen", _DEFAULT_ADMIN) if isinstance(admin, Mapping) else None
    admin_address = _address(admin_listen or _DEFAULT_ADMIN)
    if admin_address is not None:
        taken.append((admin_address, "admin.listen"))
    for i, listener in _mappings(listeners):
        bind = listener.get("bind")
        for b, value in enumerate(bind if isinstance(bind, list) else [bind]):
            address = _address(value)
            if address is None:
                continue
            loc: Loc = ("listeners", i, "bind", b) if isinstance(bind, list) else (
                "listeners", i, "bind")
            clash = next(((other, who) for other, who in taken if _clash(address, other)), None)
            if clash is None:
                taken.append((address, format_loc(loc)))
            elif clash[0] == address:
                problems.append((loc, f'"{address}" is already bound by {clash[1]}'))
            else:
                problems.append((loc, f'"{address}" overlaps "{clash[0]}" bound by {clash[1]}'))
    return problems


def _pool_options(pool_name: Any, pool: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    # Also checked by PoolConfig; repeated here so they show even when another field of
    # the pool is invalid (pydantic then skips the model validator).
    problems: list[tuple[Loc, str]] = []
    balance = pool.get("balance", "roundrobin")
    if "hash_on" in pool and balance in _BALANCES and balance != "hash":
        problems.append((("pools", str(pool_name), "hash_on"), hash_on_needs_hash(balance)))
    if _ramps(pool.get("slow_start")) and balance in _BALANCES and balance not in RAMPED_BALANCES:
        problems.append(
            (("pools", str(pool_name), "slow_start"), slow_start_needs_shares(balance))
        )
    for t, tier in _mappings(pool.get("tiers")):
        for s, server in _mappings(tier.get("servers")):
            if server.get("backup") is True:
                problems.append(
                    (("pools", str(pool_name), "tiers", t, "servers", s, "backup"), BACKUP_IN_TIERS)
                )
    return problems


def _ramps(slow_start: Any) -> bool:
    try:
        return slow_start is not None and parse_duration(slow_start) > 0
    except ValueError:
        return False  # reported by field validation


def _server_names(pool_name: Any, pool: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    # Servers are addressed by name across tiers (admin API, metrics), so unique per pool.
    problems: list[tuple[Loc, str]] = []
    lists: list[tuple[Loc, Any]] = [(("servers",), pool.get("servers"))]
    for t, tier in _mappings(pool.get("tiers")):
        lists.append((("tiers", t, "servers"), tier.get("servers")))
    first: dict[str, Loc] = {}
    for where, servers in lists:
        for s, server in _mappings(servers):
            name = as_name(server.get("name"))
            if name is None:
                continue
            loc: Loc = (*where, s)
            if name in first:
                problems.append(
                    (("pools", str(pool_name), *loc, "name"),
                     f'duplicate server name "{name}" in pool {pool_name} '
                     f"(also {format_loc(first[name])})")
                )
            else:
                first[name] = loc
    return problems
