"""The config contract: YAML in, frozen models out, every problem with its path at once."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ninelives.address import Address
from ninelives.config import (
    Config,
    ConfigError,
    HealthConfig,
    HttpCheck,
    PoolConfig,
    ServerConfig,
    TierConfig,
    config_json_schema,
    load_config,
    parse_config,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

MINIMAL = """
listeners:
  - {name: web, bind: 127.0.0.1:8080, pool: app}
pools:
  app:
    servers: [{name: a1, address: 127.0.0.1:9001}]
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env=env or {})
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_minimal_config_gets_every_default() -> None:
    config = parse_config(MINIMAL, env={})
    assert config.node.name == socket.gethostname()
    assert config.node.state_dir == Path(".ninelives")
    assert config.admin.listen == Address("127.0.0.1", 9901)
    assert config.admin.token is None
    (listener,) = config.listeners
    assert listener.bind == [Address("127.0.0.1", 8080)]  # one string became a list
    assert (listener.protocol, listener.pool, listener.routes) == ("http", "app", [])
    pool = config.pools["app"]
    assert (pool.balance, pool.hash_on, pool.sticky) == ("roundrobin", "client_ip", None)
    assert pool.health == HealthConfig(interval=1.0, timeout=0.5, rise=2, fall=2)
    assert pool.health.kind == "tcp"
    assert (pool.timeouts.connect, pool.timeouts.response, pool.timeouts.idle) == (1, 30, 60)
    assert pool.tier_list() == [
        TierConfig(provider="default", servers=[ServerConfig(name="a1", address="127.0.0.1:9001")])
    ]
    assert pool.tier_list()[0].servers[0].weight == 1


# arch*.yaml are architectures for `ninelives model`, not node configs (test_model*.py).
@pytest.mark.parametrize(
    "path", sorted(p for p in EXAMPLES.glob("*.yaml") if not p.name.startswith("arch")),
    ids=lambda p: p.name,
)
def test_examples_load(path: Path) -> None:
    config = load_config(path)
    assert config.listeners and config.pools


def test_full_example_values() -> None:
    config = load_config(EXAMPLES / "full.yaml")
    assert (config.node.name, config.admin.token) == ("lb-1", "change-me")
    web, db = config.listeners
    assert web.bind == [Address("127.0.0.1", 8080), Address("::1", 8080)]
    assert [(r.match.host, r.match.path_prefix, r.pool) for r in web.routes] == [
        ("api.example.com", "/v1", "api"),
        (None, "/static/", "static"),
    ]
    assert db.protocol == "tcp"
    app = config.pools["app"]
    assert (app.balance, app.hash_on, app.sticky and app.sticky.cookie) == (
        "hash", "header:X-User", "NLSTICKY",
    )
    assert app.health.kind == "http" and app.health.http is not None
    assert app.health.http.expect == "2xx" and app.health.http.body == "ok"
    assert (app.health.interval, app.health.timeout, app.health.fall) == (1.0, 0.5, 3)
    assert app.timeouts.idle == 60.0
    assert [(t.provider, [s.name for s in t.servers]) for t in app.tier_list()] == [
        ("cloud-a", ["a1", "a2"]),
        ("cloud-b", ["b1"]),
    ]
    assert app.tier_list()[0].servers[0].weight == 2
    assert config.pools["db"].timeouts.idle == 3600.0
    cluster = config.cluster
    assert cluster is not None
    assert (cluster.coordinator, cluster.lease_ttl) == ("local", 2.0)
    assert cluster.mode == "active-passive"
    assert cluster.local.path == Path("/var/lib/ninelives/cluster.db")
    assert cluster.vip is not None
    assert (str(cluster.vip.address), cluster.vip.interface) == ("10.0.0.100/24", "eth0")


def test_servers_shorthand_with_backup_is_two_tiers() -> None:
    pool = PoolConfig.model_validate(
        {
            "servers": [
                {"name": "b", "address": "127.0.0.1:2", "backup": True},
                {"name": "a", "address": "127.0.0.1:1"},
                {"name": "c", "address": "127.0.0.1:3", "weight": 0},
            ]
        }
    )
    tiers = pool.tier_list()
    assert [(t.provider, [s.name for s in t.servers]) for t in tiers] == [
        ("default", ["a", "c"]),
        ("default", ["b"]),
    ]


def test_servers_shorthand_without_backup_is_one_tier() -> None:
    pool = PoolConfig.model_validate({"servers": [{"name": "a", "address": "127.0.0.1:1"}]})
    assert len(pool.tier_list()) == 1


def test_backup_inside_tiers_is_an_error() -> None:
    text = MINIMAL.replace(
        "servers: [{name: a1, address: 127.0.0.1:9001}]",
        "tiers: [{provider: x, servers: [{name: a1, address: 127.0.0.1:9001, backup: true}]}]",
    )
    assert problems_of(text) == [
        "pools.app.tiers[0].servers[0].backup: backup is only for the servers shorthand; "
        "in tiers the tier order already says which servers are backups"
    ]


def test_servers_and_tiers_exactly_one() -> None:
    both = MINIMAL + "    tiers: [{servers: [{name: b1, address: 127.0.0.1:9002}]}]\n"
    assert problems_of(both) == ["pools.app: expected servers or tiers, not both"]
    neither = MINIMAL.replace("    servers: [{name: a1, address: 127.0.0.1:9001}]", "    {}")
    assert problems_of(neither) == [
        "pools.app: expected servers (one tier) or tiers (failover order)"
    ]


def test_many_problems_reported_at_once_with_paths() -> None:
    text = """
node: {name: lb-1, colour: blue}
listeners:
  - name: web
    bind: [127.0.0.1:8080]
    pool: ap
  - name: web
    bind: 127.0.0.1:8080
    protocol: udp
    pool: app
  - name: raw
    bind: 127.0.0.1:0
    protocol: tcp
    pool: app
    routes: [{match: {path_prefix: /x}, pool: app}]
pools:
  app:
    balance: roundrobin
    hash_on: client_ip
    health: {interval: 1s, timeout: 2s}
    timeouts: {connect: fast}
    tiers:
      - servers:
          - {name: a1, address: 10.0.0.1:8000}
          - {name: a1, address: 10.0.0.1, weight: 300}
  db:
    servers: [{address: 127.0.0.1:5432}]
"""
    assert problems_of(text) == [
        "node.colour: unknown key",
        'listeners[1].protocol: expected http or tcp, got "udp"',
        "listeners[2].routes: routes are for http listeners; a tcp listener has one pool",
        "pools.app.health.timeout: must not exceed interval (1s), got 2s",
        'pools.app.timeouts.connect: expected a duration like 500ms or 2s, got "fast"',
        'pools.app.tiers[0].servers[1].address: expected host:port, got "10.0.0.1"',
        "pools.app.tiers[0].servers[1].weight: expected at most 256, got 300",
        "pools.db.servers[0].name: required",
        'listeners[1].name: duplicate listener name "web" (also listeners[0])',
        'listeners[0].pool: no pool named "ap" (pools: app, db)',
        'listeners[1].bind: "127.0.0.1:8080" is already bound by listeners[0].bind[0]',
        'pools.app.tiers[0].servers[1].name: duplicate server name "a1" in pool app '
        "(also tiers[0].servers[0])",
        "pools.app.hash_on: only with balance: hash, got balance: roundrobin",
    ]


def test_model_level_problems_point_at_the_field() -> None:
    text = MINIMAL + "    health: {interval: 1s, timeout: 2s}\n"
    assert problems_of(text) == ["pools.app.health.timeout: must not exceed interval (1s), got 2s"]


def test_durations_accept_strings_and_numbers() -> None:
    health = HealthConfig.model_validate({"interval": "2s", "timeout": 0.25})
    assert (health.interval, health.timeout) == (2.0, 0.25)
    with pytest.raises(ValidationError):
        HealthConfig.model_validate({"interval": "0s"})


def test_command_check() -> None:
    command = '{command: "pg_isready -h {host} -p {port}", timeout: 2s, interval: 5s}'
    text = MINIMAL + f"    health: {command}\n"
    health = parse_config(text, env={}).pools["app"].health
    assert (health.kind, health.command) == ("command", "pg_isready -h {host} -p {port}")
    assert (health.tcp, health.http) == (None, None)


@pytest.mark.parametrize(
    ("health", "problem"),
    [
        (
            '{command: "true", http: {}}',
            "pools.app.health: expected one check (tcp, http or command), got http and command",
        ),
        ('{command: ""}', 'pools.app.health.command: expected a non-empty string, got ""'),
        ("{command: }", "pools.app.health.command: expected a non-empty string, got nothing"),
        (
            "{interval: 1s, fast_interval: 2s}",
            "pools.app.health.fast_interval: must not exceed interval (1s), got 2s",
        ),
        ("{down_interval: 0s}", (
            'pools.app.health.down_interval: expected a duration above 0 like 500ms or 2s, '
            'got "0s"'
        )),
    ],
)
def test_health_problems(health: str, problem: str) -> None:
    assert problems_of(MINIMAL + f"    health: {health}\n") == [problem]


def test_fast_and_down_intervals() -> None:
    text = MINIMAL + "    health: {interval: 2s, fast_interval: 100ms, down_interval: 10s}\n"
    health = parse_config(text, env={}).pools["app"].health
    assert (health.fast_every, health.down_every) == (0.1, 10.0)
    default = parse_config(MINIMAL, env={}).pools["app"].health
    assert (default.fast_interval, default.down_interval) == (None, None)
    assert (default.fast_every, default.down_every) == (0.25, 0.5)


def test_slow_start_and_panic() -> None:
    pool = parse_config(MINIMAL, env={}).pools["app"]
    assert (pool.slow_start, pool.panic) == (10.0, 0.5)
    text = MINIMAL + "    slow_start: 0s\n    panic: 0%\n"
    pool = parse_config(text, env={}).pools["app"]
    assert (pool.slow_start, pool.panic) == (0.0, 0.0)
    assert problems_of(MINIMAL + "    panic: 0.5\n") == [
        "pools.app.panic: expected a percentage like 99.95% or 50%, got 0.5 "
        "(a bare number is ambiguous: write it with %)"
    ]
    assert problems_of(MINIMAL + "    balance: first\n    slow_start: 5s\n") == [
        "pools.app.slow_start: only with balance roundrobin, leastconn or random2 (first sends "
        "everything to one server); got balance: first, set slow_start: 0s or leave it out"
    ]
    # Reported with the pool's other problems too (the model validator is skipped then).
    assert problems_of(
        MINIMAL + "    balance: hash\n    slow_start: 5s\n    timeouts: {connect: fast}\n"
    ) == [
        'pools.app.timeouts.connect: expected a duration like 500ms or 2s, got "fast"',
        "pools.app.slow_start: only with balance roundrobin, leastconn or random2 (hash keeps "
        "every key on its server); got balance: hash, set slow_start: 0s or leave it out",
    ]


@pytest.mark.parametrize(
    ("given", "stored", "yes", "no"),
    [
        (200, "200", [200], [201, 500]),
        ("204", "204", [204], [200]),
        ("2XX", "2xx", [200, 299], [199, 300]),
        ("200-399", "200-399", [200, 302, 399], [199, 400]),
        ("200 - 204", "200-204", [204], [205]),
    ],
)
def test_http_check_expect(given: Any, stored: str, yes: list[int], no: list[int]) -> None:
    check = HttpCheck.model_validate({"expect": given})
    assert check.expect == stored
    assert all(check.accepts(s) for s in yes)
    assert not any(check.accepts(s) for s in no)


@pytest.mark.parametrize("bad", ["ok", 99, 600, "6xx", "399-200", True])
def test_http_check_expect_rejects(bad: Any) -> None:
    with pytest.raises(ValidationError, match="expected a status like 200"):
        HttpCheck.model_validate({"expect": bad})


def test_http_check_defaults_and_empty_means_defaults() -> None:
    config = parse_config(MINIMAL + "    health: {http: }\n", env={})
    assert config.pools["app"].health.http == HttpCheck(path="/", method="GET", expect="200")
    assert config.pools["app"].health.kind == "http"
    assert problems_of(MINIMAL + "    health: {http: {}, tcp: {}}\n") == [
        "pools.app.health: expected one check (tcp, http or command), got tcp and http"
    ]


@pytest.mark.parametrize(
    ("balance", "hash_on", "problem"),
    [
        ("hash", "client_ip", None),
        ("hash", "header:X-User", None),
        ("hash", "cookie:session", None),
        ("hash", "header:", 'expected client_ip, header:NAME or cookie:NAME, got "header:"'),
        ("hash", "ip", 'expected client_ip, header:NAME or cookie:NAME, got "ip"'),
        ("leastconn", "client_ip", "only with balance: hash, got balance: leastconn"),
    ],
)
def test_hash_on(balance: str, hash_on: str, problem: str | None) -> None:
    text = MINIMAL + f"    balance: {balance}\n    hash_on: '{hash_on}'\n"
    if problem is None:
        assert parse_config(text, env={}).pools["app"].hash_on == hash_on
    else:
        assert problems_of(text) == [f"pools.app.hash_on: {problem}"]


def test_bind_clashes() -> None:
    listeners = """
listeners:
  - {name: a, bind: 127.0.0.1:0, pool: app}
  - {name: b, bind: 127.0.0.1:0, pool: app}
  - {name: c, bind: 0.0.0.0:8080, pool: app}
  - {name: d, bind: [127.0.0.1:8081, 127.0.0.1:8080], pool: app}
  - {name: e, bind: 127.0.0.1:9901, pool: app}
"""
    text = listeners + MINIMAL.split("\n", 3)[3]
    assert problems_of(text) == [
        'listeners[3].bind[1]: "127.0.0.1:8080" overlaps "0.0.0.0:8080" bound by listeners[2].bind',
        'listeners[4].bind: "127.0.0.1:9901" is already bound by admin.listen',
    ]


def test_route_pool_must_exist_and_match_something() -> None:
    text = MINIMAL.replace(
        "pool: app}", "pool: app, routes: [{match: {host: API.example.com}, pool: nope}, "
        "{match: {}, pool: app}]}"
    )
    assert problems_of(text) == [
        "listeners[0].routes[1].match: expected host, path_prefix or both",
        'listeners[0].routes[0].pool: no pool named "nope" (pools: app)',
    ]


def test_route_host_is_lower_case() -> None:
    text = MINIMAL.replace(
        "pool: app}", "pool: app, routes: [{match: {host: API.example.com}, pool: app}]}"
    )
    assert parse_config(text, env={}).listeners[0].routes[0].match.host == "api.example.com"


def test_env_substitution() -> None:
    text = "admin: {token: ${TOKEN}}\n" + MINIMAL.replace("8080", "${PORT}")
    config = parse_config(text, env={"TOKEN": "s3cret", "PORT": "8088"})
    assert config.admin.token == "s3cret"
    assert config.listeners[0].bind == [Address("127.0.0.1", 8088)]


def test_env_escape_and_comments() -> None:
    text = "# old: ${UNSET_IN_A_COMMENT}\nadmin: {token: 'a$${b}'}\n" + MINIMAL
    assert parse_config(text, env={}).admin.token == "a${b}"


def test_env_undefined_names_the_line() -> None:
    text = MINIMAL + "admin:\n  token: ${NINELIVES_TOKEN}\n  listen: ${ADMIN} ${bad-name}\n"
    assert problems_of(text) == [
        "line 8: environment variable NINELIVES_TOKEN is not set",
        "line 9: environment variable ADMIN is not set",
        "line 9: expected ${NAME} with NAME like NINELIVES_TOKEN, got ${bad-name}",
    ]


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NL_TEST_TOKEN", "from-env")
    config = parse_config("admin: {token: ${NL_TEST_TOKEN}}\n" + MINIMAL)
    assert config.admin.token == "from-env"


def test_empty_token_is_an_error() -> None:
    assert problems_of("admin: {token: ''}\n" + MINIMAL) == [
        "admin.token: expected a non-empty token; leave token out to have none"
    ]


def test_yaml_problems() -> None:
    assert problems_of("pools:\n  app: b: c\n") == [
        "line 2, column 9: mapping values are not allowed here"
    ]
    assert problems_of("a:\n\t- b\n") == [
        "line 2, column 1: found character '\\t' that cannot start any token"
    ]
    assert problems_of("- a\n- b\n") == ['expected a mapping of sections (listeners, pools, '
                                         '...), got a list']
    assert problems_of("") == ["listeners: required", "pools: required"]
    assert problems_of("pools: {}\nlisteners: []\npools: {}\n") == [
        'line 3: duplicate key "pools" (first at line 1)'
    ]


def test_wrong_types_are_explained() -> None:
    text = "listeners: {}\npools: {app: [1], other: {servers: [{name: a, address: 80}]}}\n"
    assert problems_of(text) == [
        "listeners: expected a list, got a mapping",
        "pools.app: expected a mapping, got a list",
        "pools.other.servers[0].address: expected host:port, got 80",
    ]


def test_numbers_as_names_are_names() -> None:
    text = MINIMAL.replace("app:", "1:").replace("pool: app", "pool: 1").replace("a1", "7")
    config = parse_config(text, env={})
    assert config.listeners[0].pool == "1"
    assert config.pools["1"].tier_list()[0].servers[0].name == "7"
    bad = "listeners: [{name: a, bind: {}, pool: 2}]\npools: {1: {servers: [{name: s}]}}\n"
    assert problems_of(bad) == [
        "listeners[0].bind: expected host:port or a list of them, got a mapping",
        "pools.1.servers[0].address: required",
        'listeners[0].pool: no pool named "2" (pools: 1)',
    ]


def test_models_built_in_python() -> None:
    pool = PoolConfig(
        balance="hash",
        hash_on="cookie:sid",
        servers=[ServerConfig(name="a", address=Address("127.0.0.1", 1), weight=3)],
    )
    assert pool.tier_list()[0].servers[0].address == Address("127.0.0.1", 1)
    with pytest.raises(ValidationError, match="hash_on: only with balance: hash"):
        PoolConfig(hash_on="client_ip", servers=pool.servers)


def test_names_are_safe_for_urls_and_labels() -> None:
    text = MINIMAL.replace("app:", "a/b:").replace("name: a1", "name: 'a 1'")
    assert problems_of(text) == [
        'pools.a/b: expected a name of letters, digits, "-", "_" and ".", got "a/b"',
        'pools.a/b.servers[0].name: expected a name of letters, digits, "-", "_" and ".", '
        'got "a 1"',
        'listeners[0].pool: no pool named "app" (pools: a/b)',
    ]


def test_server_port_zero_is_an_error() -> None:
    assert problems_of(MINIMAL.replace("9001", "0")) == [
        'pools.app.servers[0].address: expected the port the server listens on, '
        'got "127.0.0.1:0"'
    ]


def test_models_are_frozen() -> None:
    config = parse_config(MINIMAL, env={})
    with pytest.raises(ValidationError):
        config.pools["app"].balance = "first"  # type: ignore[misc]


def test_config_built_in_python_runs_cross_checks() -> None:
    data = {
        "listeners": [{"name": "web", "bind": "127.0.0.1:80", "pool": "missing"}],
        "pools": {"app": {"servers": [{"name": "a", "address": "127.0.0.1:1"}]}},
    }
    with pytest.raises(ValidationError, match='no pool named "missing"'):
        Config.model_validate(data)


def test_dump_round_trips() -> None:
    config = load_config(EXAMPLES / "full.yaml")
    # exclude_unset: a dump of every field would name hash_on in pools that do not hash.
    dumped = config.model_dump(mode="json", exclude_unset=True)
    assert dumped["admin"]["listen"] == "127.0.0.1:9901"
    assert Config.model_validate(json.loads(json.dumps(dumped))) == config


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    missing = tmp_path / "nope.yaml"
    assert caught.value.problems == [f"cannot read {missing}: No such file or directory"]


def test_json_schema_for_editors() -> None:
    schema = config_json_schema()
    json.dumps(schema)  # serialisable
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {
        "node", "admin", "listeners", "pools", "cluster", "uptime",
    }
    assert schema["required"] == ["listeners", "pools"]
    defs = schema["$defs"]
    interval = defs["HealthConfig"]["properties"]["interval"]
    assert {s["type"] for s in interval["anyOf"]} == {"number", "string"}
    assert defs["ServerConfig"]["properties"]["address"]["type"] == "string"
    assert defs["AdminConfig"]["properties"]["listen"]["default"] == "127.0.0.1:9901"
    assert defs["PoolConfig"]["additionalProperties"] is False


# -- cluster -----------------------------------------------------------------------------------


def test_no_cluster_section_means_a_node_alone_and_an_empty_one_means_the_defaults() -> None:
    assert parse_config(MINIMAL, env={}).cluster is None
    cluster = parse_config(MINIMAL + "cluster: {}\n", env={}).cluster
    assert cluster is not None
    assert (cluster.coordinator, cluster.lease_ttl, cluster.mode, cluster.vip) == (
        "local", 2.0, "active-passive", None,
    )
    assert cluster.local.path == Path("/var/lib/ninelives/cluster.db")
    assert (cluster.etcd.endpoints, cluster.etcd.prefix) == (
        ["http://127.0.0.1:2379"], "/ninelives",
    )
    assert (cluster.priority, cluster.preempt) == (100, False)  # failback: stay


def test_an_etcd_cluster() -> None:
    cluster = parse_config(MINIMAL + """
cluster:
  coordinator: etcd
  etcd: {endpoints: ["http://10.0.0.5:2379/", https://etcd.internal:2379], prefix: /nl/prod/}
  lease_ttl: 3s
  mode: active-active
""", env={}).cluster
    assert cluster is not None
    assert cluster.etcd.endpoints == ["http://10.0.0.5:2379", "https://etcd.internal:2379"]
    assert (cluster.etcd.prefix, cluster.lease_ttl, cluster.mode) == ("/nl/prod", 3.0,
                                                                      "active-active")


def test_cluster_problems_are_all_reported_with_their_paths() -> None:
    problems = problems_of(MINIMAL + """
cluster:
  coordinator: etcd
  local: {path: /tmp/c.db}
  etcd: {endpoints: [127.0.0.1:2379, "http://e:2379/v3"], prefix: ninelives}
  lease_ttl: 1500ms
  mode: active-active
  vip: {address: 10.0.0.0/24, interface: eth0}
""")
    assert problems == [
        'cluster.etcd.endpoints[0]: expected an etcd client URL like http://127.0.0.1:2379, '
        'got "127.0.0.1:2379"',
        'cluster.etcd.endpoints[1]: expected an etcd client URL like http://127.0.0.1:2379, '
        'got "http://e:2379/v3"',
        'cluster.etcd.prefix: expected a key prefix like /ninelives/prod, got "ninelives"',
        "cluster.vip.address: 10.0.0.0 is the network address of 10.0.0.0/24",
        "cluster.local: only with coordinator: local, got coordinator: etcd",
        "cluster.lease_ttl: etcd grants leases in whole seconds, got 1.5s",
        "cluster.vip: only with mode: active-passive "
        "(in active-active every node serves its own addresses)",
    ]


@pytest.mark.parametrize(
    ("cluster", "problem"),
    [
        ("{coordinator: zookeeper}",
         'cluster.coordinator: expected local or etcd, got "zookeeper"'),
        ("{etcd: {prefix: /x}}",
         "cluster.etcd: only with coordinator: etcd, got coordinator: local"),
        ("{lease_ttl: 200ms}",
         "cluster.lease_ttl: expected at least 500ms (the leader's margin is a third of it), "
         "got 200ms"),
        ("{lease_ttl: 0}", "cluster.lease_ttl: expected a duration above 0 like 500ms or 2s, "
                           "got 0"),
        ("{mode: active-standby}",
         'cluster.mode: expected active-passive or active-active, got "active-standby"'),
        ("{vip: {address: 10.0.0.100, interface: eth0}}",
         "cluster.vip.address: expected an address with its prefix length like 10.0.0.100/24, "
         'got "10.0.0.100"'),
        ("{vip: {address: 127.0.0.2/8, interface: lo}}",
         'cluster.vip.address: expected an address hosts can reach, got "127.0.0.2/8"'),
        ("{vip: {address: 10.0.0.255/24, interface: eth0}}",
         "cluster.vip.address: 10.0.0.255 is the broadcast address of 10.0.0.0/24"),
        ("{vip: {address: 10.0.0.100/24, interface: a-very-long-interface}}",
         "cluster.vip.interface: expected a network interface name like eth0 (at most 15 "
         'characters, no /, : or spaces), got "a-very-long-interface"'),
        ("{vip: {address: 10.0.0.100/24}}", "cluster.vip.interface: required"),
        ("{etcd: {endpoints: []}, coordinator: etcd}", "cluster.etcd.endpoints: must not be empty"),
        ("{local: {path: /x, colour: red}}", "cluster.local.colour: unknown key"),
        ("{priority: 300}", "cluster.priority: expected at most 255, got 300"),
        ("{preempt: maybe}", 'cluster.preempt: expected true or false, got "maybe"'),
        ("{mode: active-active, preempt: true}",
         "cluster.preempt: only with mode: active-passive (in active-active nobody leads)"),
    ],
)
def test_cluster_problems(cluster: str, problem: str) -> None:
    assert problems_of(MINIMAL + f"cluster: {cluster}\n") == [problem]


def test_a_vip_may_be_ipv6_and_round_trips() -> None:
    text = MINIMAL + "cluster: {vip: {address: 'fd00::64/64', interface: br-lan}}\n"
    config = parse_config(text, env={})
    dumped = config.model_dump(mode="json", exclude_unset=True)
    assert dumped["cluster"] == {"vip": {"address": "fd00::64/64", "interface": "br-lan"}}
    assert Config.model_validate(dumped) == config


def test_uptime_section_defaults_and_problems_with_their_paths() -> None:
    config = parse_config(MINIMAL, env={})
    assert config.uptime.retention == 400 * 86400 and config.uptime.maintenance == []
    problems = problems_of(MINIMAL + """
uptime:
  retention: 2h
  colour: red
  maintenance:
    - {pool: apx, every: sunday, start: "02:00", duration: 1h}
    - {server: app/a9, every: [sat, funday], start: "02:00", duration: 1h, timezone: Mars/Base}
    - {listener: wob, start: "2025-06-01", duration: 1h}
    - {listener: web, pool: app, every: day, start: "25:00", duration: 8d}
    - {every: sunday, start: 12:30, duration: 1h}
""")
    assert problems == [
        "uptime.retention: expected at least 1d, got 2h",
        'uptime.maintenance[1].every: expected a weekday like sunday (or sun), a list of them, '
        'or day, got "funday"',
        'uptime.maintenance[1].timezone: unknown time zone "Mars/Base" (an IANA name like UTC '
        "or Europe/Paris)",
        'uptime.maintenance[2].start: expected a date and a time like 2025-06-01 02:00, '
        'got "2025-06-01"',
        "uptime.maintenance[3]: expected at most one of pool, server, listener, got pool and "
        "listener",
        'uptime.maintenance[3].start: expected a time of day like 02:00, got "25:00"',
        "uptime.maintenance[3].duration: a weekly window lasts at most 7d, got 8d",
        'uptime.maintenance[4].start: expected a quoted time like "02:00", got 750 (YAML reads '
        "an unquoted 02:00 as a number)",
        "uptime.colour: unknown key",
        'uptime.maintenance[0].pool: no pool named "apx" (pools: app)',
        "uptime.maintenance[1].server: no server named \"a9\" in pool app (servers: a1)",
        'uptime.maintenance[2].listener: no listener named "wob" (listeners: web)',
    ]


def test_slos_and_webhooks_are_read_and_their_problems_have_paths() -> None:
    config = parse_config(MINIMAL + """
uptime:
  slos:
    - {name: web-requests, listener: web, target: 99.95%}
    - {name: app-time, pool: app, target: 99.9%, window: 7d, kind: time}
  webhooks: [http://127.0.0.1:9000/hook]
""", env={})
    first, second = config.uptime.objectives()
    assert (first.entity, first.target, first.window_s, first.kind) == (
        ("listener", "web"), 0.9995, 30 * 86400, "requests")
    assert (second.entity, second.window_s, second.kind) == (("pool", "app"), 7 * 86400, "time")
    assert config.uptime.webhooks == ["http://127.0.0.1:9000/hook"]
    problems = problems_of(MINIMAL + """
uptime:
  slos:
    - {name: a, listener: wob, target: 99.9%}
    - {name: a, pool: apx, target: "0.999"}
    - {name: b, target: 100%, window: 10m}
    - {name: c, listener: web, pool: app, target: 99%, kind: latency}
    - {name: d, listener: web, pool: app, target: 99%}
  webhooks: [ftp://x, "http://"]
""")
    assert problems == [
        'uptime.slos[1].target: expected a percentage like 99.95% or 50%, got "0.999"',
        "uptime.slos[2].target: expected a target above 0% and below 100%, got 100%",
        "uptime.slos[2].window: expected at least 1h, got 10m",
        'uptime.slos[3].kind: expected requests or time, got "latency"',
        "uptime.slos[4]: expected exactly one of listener or pool",
        'uptime.webhooks[0]: expected a URL like http://127.0.0.1:8080/hook, got "ftp://x"',
        'uptime.webhooks[1]: expected a URL like http://127.0.0.1:8080/hook, got "http://"',
        'uptime.slos[0].listener: no listener named "wob" (listeners: web)',
        'uptime.slos[1].name: duplicate SLO name "a" (also uptime.slos[0])',
        'uptime.slos[1].pool: no pool named "apx" (pools: app)',
    ]
