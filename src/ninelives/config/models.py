"""The config as typed, frozen pydantic models: what the rest of ninelives codes against.

Every model forbids unknown keys (a typo must not silently become a default) and is
frozen (a running node shares one config snapshot; a reload builds a new one).
"""

from __future__ import annotations

import socket
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ninelives.address import Address
from ninelives.config.checks import (
    BACKUP_IN_TIERS,
    RAMPED_BALANCES,
    cross_field_problems,
    hash_on_needs_hash,
    slow_start_needs_shares,
)
from ninelives.config.cluster import ClusterConfig
from ninelives.config.fields import (
    AddressField,
    AddressList,
    Duration,
    DurationOrZero,
    Loc,
    ModelProblems,
    Name,
    Percent,
    RetryCondition,
    Size,
    StatusExpectation,
    Text,
    WebhookUrl,
    is_name,
    is_token,
    status_accepted,
)
from ninelives.units import describe_input, format_duration
from ninelives.uptime.maintenance import (
    WEEKDAYS,
    MaintenanceRule,
    parse_moment,
    parse_time_of_day,
    parse_weekdays,
    parse_zone,
)
from ninelives.uptime.slo import DEFAULT_MIN_REQUESTS, Objective

# Tells Config's validator that the loader already ran the cross-field checks on the raw
# data (so it could report them together with field errors) and need not repeat them.
CROSS_CHECKED = "ninelives.cross_checked"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeConfig(_Model):
    # Shown in the readiness line and used as the cluster member id, hence a Name.
    name: Name = Field(default_factory=socket.gethostname)
    state_dir: Path = Path(".ninelives")  # uptime history and server state; relative to cwd


class AdminConfig(_Model):
    listen: AddressField = Field(
        default=Address("127.0.0.1", 9901), json_schema_extra={"default": "127.0.0.1:9901"}
    )
    token: str | None = None  # required as a Bearer token by calls that change state

    @field_validator("token")
    @classmethod
    def _token_not_blank(cls, token: str | None) -> str | None:
        # An empty ${NINELIVES_TOKEN} would otherwise make "Bearer " the password.
        if token is not None and not token.strip():
            raise ValueError("expected a non-empty token; leave token out to have none")
        return token


class RouteMatch(_Model):
    host: str | None = None  # compared case-insensitively, so stored lower-case
    path_prefix: str | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, host: str | None) -> str | None:
        if host is not None and (not host or any(c.isspace() or c == "/" for c in host)):
            raise ValueError(
                f"expected a host name like api.example.com, got {describe_input(host)}"
            )
        return host.lower() if host is not None else None

    @field_validator("path_prefix")
    @classmethod
    def _path_prefix(cls, prefix: str | None) -> str | None:
        if prefix is not None and not prefix.startswith("/"):
            raise ValueError(f"expected a path starting with /, got {describe_input(prefix)}")
        return prefix

    @model_validator(mode="after")
    def _something_to_match(self) -> Self:
        if self.host is None and self.path_prefix is None:
            raise ValueError("expected host, path_prefix or both")
        return self


class RouteConfig(_Model):
    match: RouteMatch
    pool: Name


class ListenerConfig(_Model):
    name: Name
    bind: AddressList = Field(min_length=1)
    protocol: Literal["http", "tcp"] = "http"
    pool: Name
    routes: list[RouteConfig] = []  # first match wins; no match goes to `pool`

    @model_validator(mode="after")
    def _routes_need_http(self) -> Self:
        if self.routes and self.protocol != "http":
            raise ModelProblems(
                [(("routes",), "routes are for http listeners; a tcp listener has one pool")]
            )
        return self


class ServerConfig(_Model):
    name: Name
    address: AddressField
    weight: int = Field(default=1, ge=0, le=256)  # 0 takes no new traffic, as in HAProxy
    backup: bool = False  # servers shorthand only: the backup servers form tier 1

    @field_validator("address")
    @classmethod
    def _real_port(cls, address: Address) -> Address:
        if address.port == 0:
            raise ValueError(f'expected the port the server listens on, got "{address}"')
        return address


class TierConfig(_Model):
    provider: Text = "default"
    servers: list[ServerConfig] = Field(min_length=1)


class StickyConfig(_Model):
    cookie: str

    @field_validator("cookie")
    @classmethod
    def _cookie_name(cls, cookie: str) -> str:
        if not is_token(cookie):
            raise ValueError(f"expected a cookie name like NLSTICKY, got {describe_input(cookie)}")
        return cookie


class TcpCheck(_Model):
    """A TCP connect check: the server is up if it accepts a connection."""


class HttpCheck(_Model):
    path: str = "/"
    method: str = "GET"
    host: str | None = None  # Host header; the server's address when not given
    expect: StatusExpectation = "200"
    body: str | None = None  # a substring the response body must contain

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"expected a path starting with /, got {describe_input(path)}")
        return path

    @field_validator("method")
    @classmethod
    def _method(cls, method: str) -> str:
        if not is_token(method):
            raise ValueError(f"expected an HTTP method like GET, got {describe_input(method)}")
        return method.upper()

    def accepts(self, status: int) -> bool:
        return status_accepted(self.expect, status)


# fast_interval and down_interval default to these shares of interval (see HealthConfig).
FAST_SHARE = 0.25
DOWN_SHARE = 0.5
CHECK_KINDS = ("tcp", "http", "command")


class HealthConfig(_Model):
    """The active check of a pool's servers and its schedule.

    One check: ``tcp`` (the default), ``http`` or ``command`` (a shell command run once per
    server, ``{host}``, ``{port}`` and ``{server}`` replaced; exit 0 passes). A server is
    checked every ``interval``; every ``fast_interval`` while a streak is under way (a check
    failed on an up server, or passed on a down one: HAProxy's fastinter), so that ``rise``
    and ``fall`` are reached sooner; every ``down_interval`` while it is down (downinter).
    """

    tcp: TcpCheck | None = None
    http: HttpCheck | None = None
    command: Text | None = None
    interval: Duration = 1.0
    timeout: Duration = 0.5
    rise: int = Field(default=2, ge=1)  # consecutive passes to mark a server up
    fall: int = Field(default=2, ge=1)  # consecutive failures to mark it down
    fast_interval: Duration | None = None  # default: interval / 4
    down_interval: Duration | None = None  # default: interval / 2

    @model_validator(mode="before")
    @classmethod
    def _empty_check_means_defaults(cls, data: Any) -> Any:
        # `http:` with nothing after it means "an HTTP check with the defaults", not "no
        # check". Only when it is the one check named: a dump writes both, one as null.
        if isinstance(data, dict):
            named = [key for key in CHECK_KINDS if key in data]
            if named == ["command"] and data["command"] is None:
                # There is no default command: `command:` alone is a missing command.
                raise ModelProblems([(("command",), "expected a non-empty string, got nothing")])
            if len(named) == 1 and data[named[0]] is None:
                return {**data, named[0]: {}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        checks = [kind for kind in CHECK_KINDS if getattr(self, kind) is not None]
        if len(checks) > 1:
            problems.append(
                ((), f"expected one check (tcp, http or command), got {' and '.join(checks)}")
            )
        if self.timeout > self.interval:
            problems.append(
                (
                    ("timeout",),
                    f"must not exceed interval ({format_duration(self.interval)}), "
                    f"got {format_duration(self.timeout)}",
                )
            )
        if self.fast_interval is not None and self.fast_interval > self.interval:
            problems.append(
                (
                    ("fast_interval",),
                    f"must not exceed interval ({format_duration(self.interval)}), "
                    f"got {format_duration(self.fast_interval)}",
                )
            )
        if problems:
            raise ModelProblems(problems)
        return self

    @property
    def kind(self) -> Literal["tcp", "http", "command"]:
        if self.command is not None:
            return "command"
        return "http" if self.http is not None else "tcp"

    @property
    def fast_every(self) -> float:
        """Seconds between checks while a streak is under way (rising or falling)."""
        if self.fast_interval is not None:
            return self.fast_interval
        return self.interval * FAST_SHARE

    @property
    def down_every(self) -> float:
        """Seconds between checks of a server that is down (and not rising)."""
        if self.down_interval is not None:
            return self.down_interval
        return self.interval * DOWN_SHARE


class TimeoutsConfig(_Model):
    connect: Duration = 1.0
    response: Duration = 30.0
    idle: Duration = 60.0  # client keep-alive idle (http) and idle connection (tcp)


class OutlierConfig(_Model):
    """Passive detection: live traffic ejects a server that keeps failing.

    A failure is a connect failure, a response timeout, a connection closed before the
    response, or a 5xx response. ``consecutive_failures`` in a row eject the server for
    ``ejection`` times the number of times it has been ejected, at most ``max_ejection``;
    then it returns once its active check passes. At most ``max_ejected`` of a pool's
    servers are ejected at once (always at least one may be).
    """

    enabled: bool = True
    consecutive_failures: int = Field(default=3, ge=1)
    ejection: Duration = 10.0
    max_ejection: Duration = 300.0
    max_ejected: Percent = 0.5


# Methods a retry may send again after the request reached a server (RFC 9110 9.2.2).
DEFAULT_RETRY_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")


class RetriesConfig(_Model):
    """Sending a request again, to another server, when the first could not answer.

    ``attempts`` is the number of retries after the first try. ``connect-failure`` is
    retried for every method (nothing was sent); ``timeout``, ``reset`` and statuses only
    for ``methods``, and only while no byte of the response has reached the client and
    the request body (if any) is at most ``max_body`` (kept for the replay). Retries in
    flight are bounded by ``budget`` of the pool's active requests, at least
    ``min_retries``.
    """

    attempts: int = Field(default=2, ge=0, le=10)
    on: list[RetryCondition] = Field(
        default_factory=lambda: ["connect-failure", "timeout", "reset", "502", "503", "504"]
    )
    methods: list[str] = Field(default_factory=lambda: list(DEFAULT_RETRY_METHODS))
    max_body: Size = 64 * 1024
    budget: Percent = 0.2
    min_retries: int = Field(default=3, ge=0)

    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: list[str]) -> list[str]:
        for method in methods:
            if not is_token(method):
                raise ValueError(
                    f"expected HTTP methods like GET, got {describe_input(method)}"
                )
        return [m.upper() for m in methods]

    def retries_status(self, status: int) -> bool:
        return any(status_accepted(c, status) for c in self.on if c[0].isdigit())


Balance = Literal["roundrobin", "leastconn", "random2", "hash", "first"]


class PoolConfig(_Model):
    balance: Balance = "roundrobin"
    hash_on: str = "client_ip"  # client_ip | header:NAME | cookie:NAME
    sticky: StickyConfig | None = None
    health: HealthConfig = Field(default_factory=HealthConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    outlier: OutlierConfig = Field(default_factory=OutlierConfig)
    retries: RetriesConfig = Field(default_factory=RetriesConfig)
    # A server back from down, ejection or maint starts at a tenth of its weight and reaches
    # all of it after slow_start (0s: off). roundrobin, leastconn and random2 only.
    slow_start: DurationOrZero = 10.0
    # Below this share of healthy servers (and no backup tier healthy enough), spread over
    # the servers that answer their checks, passing or not (0%: never). See README.
    panic: Percent = 0.5
    tiers: list[TierConfig] | None = Field(default=None, min_length=1)
    servers: list[ServerConfig] | None = Field(default=None, min_length=1)

    @field_validator("hash_on")
    @classmethod
    def _hash_on(cls, hash_on: str) -> str:
        kind, sep, name = hash_on.partition(":")
        if hash_on == "client_ip" or (kind in ("header", "cookie") and sep and is_token(name)):
            return hash_on
        raise ValueError(
            f"expected client_ip, header:NAME or cookie:NAME, got {describe_input(hash_on)}"
        )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        if "hash_on" in self.model_fields_set and self.balance != "hash":
            problems.append((("hash_on",), hash_on_needs_hash(self.balance)))
        if (
            "slow_start" in self.model_fields_set and self.slow_start > 0
            and self.balance not in RAMPED_BALANCES
        ):
            problems.append((("slow_start",), slow_start_needs_shares(self.balance)))
        if self.tiers is None and self.servers is None:
            problems.append(((), "expected servers (one tier) or tiers (failover order)"))
        if self.tiers is not None and self.servers is not None:
            problems.append(((), "expected servers or tiers, not both"))
        for t, tier in enumerate(self.tiers or []):
            for s, server in enumerate(tier.servers):
                if server.backup:
                    problems.append((("tiers", t, "servers", s, "backup"), BACKUP_IN_TIERS))
        if problems:
            raise ModelProblems(problems)
        return self

    def tier_list(self) -> list[TierConfig]:
        """Tiers in failover order; the servers shorthand is tier 0, then its backups."""
        if self.tiers is not None:
            return list(self.tiers)
        servers = self.servers or []
        primary = [s for s in servers if not s.backup]
        backup = [s for s in servers if s.backup]
        tiers = [TierConfig(servers=primary)] if primary else []
        if backup:
            tiers.append(TierConfig(servers=backup))
        return tiers


HOUR = 3600.0
DAY = 86_400.0
WEEK = 7 * DAY


class MaintenanceConfig(_Model):
    """A planned maintenance window: time inside it is not counted against availability.

    Weekly (``every: sunday``, a list of days, or ``day``) at a local ``start`` time
    (``"02:00"``), or one-off without ``every`` (``start: "2025-06-01 02:00"``), in
    ``timezone``. It covers everything, or one ``pool`` (with its servers, providers and the
    listeners in front of it), one ``server`` (``POOL/SERVER``) or one ``listener``.
    """

    pool: Name | None = None
    server: str | None = None
    listener: Name | None = None
    every: list[str] | None = None  # weekday names, normalised; all seven for "day"
    start: str
    duration: Duration
    timezone: str = "UTC"
    reason: Text = "planned maintenance"

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, every: Any) -> list[str] | None:
        if every is None:
            return None
        return [WEEKDAYS[day] for day in parse_weekdays(every)]

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, start: Any) -> Any:
        if isinstance(start, datetime):
            return start.isoformat(" ")  # YAML read 2025-06-01 02:00:00 as a timestamp
        if isinstance(start, date):
            return start.isoformat()
        if isinstance(start, int) and not isinstance(start, bool):
            # YAML 1.1 reads an unquoted 02:00 as the base-60 number 120.
            raise ValueError(f'expected a quoted time like "02:00", got {start} '
                             "(YAML reads an unquoted 02:00 as a number)")
        return start

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, timezone: str) -> str:
        parse_zone(timezone)
        return timezone

    @field_validator("server")
    @classmethod
    def _server(cls, server: str | None) -> str | None:
        if server is None:
            return None
        pool, sep, name = server.partition("/")
        if not sep or not is_name(pool) or not is_name(name):
            raise ValueError(f"expected POOL/SERVER like app/a1, got {describe_input(server)}")
        return server

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        scopes = [key for key in ("pool", "server", "listener") if getattr(self, key) is not None]
        if len(scopes) > 1:
            problems.append(((), f"expected at most one of pool, server, listener, got "
                                 f"{' and '.join(scopes)}"))
        try:
            if self.every is not None:
                parse_time_of_day(self.start)
            else:
                parse_moment(self.start)
        except ValueError as exc:
            problems.append((("start",), str(exc)))
        if self.every is not None and self.duration > WEEK:
            problems.append((("duration",), f"a weekly window lasts at most 7d, got "
                                            f"{format_duration(self.duration)}"))
        if problems:
            raise ModelProblems(problems)
        return self

    def rule(self) -> MaintenanceRule:
        scope: tuple[str, str] | None = None
        for key in ("pool", "server", "listener"):
            value = getattr(self, key)
            if value is not None:
                scope = (key, value)
        zone = parse_zone(self.timezone)
        if self.every is None:
            return MaintenanceRule(scope, self.duration, zone, self.reason,
                                   once=parse_moment(self.start))
        weekdays = tuple(WEEKDAYS.index(day) for day in self.every)
        return MaintenanceRule(scope, self.duration, zone, self.reason, weekdays=weekdays,
                               at=parse_time_of_day(self.start))


class SloConfig(_Model):
    """A service level objective on one ``listener`` or ``pool`` (see ninelives.uptime.slo):
    ``target`` of its requests (``kind: requests``) or of its time (``kind: time``) good
    over a rolling ``window``."""

    name: Name
    listener: Name | None = None
    pool: Name | None = None
    target: Percent
    window: Duration = 30 * DAY
    kind: Literal["requests", "time"] = "requests"
    min_requests: int = Field(default=DEFAULT_MIN_REQUESTS, ge=0)  # a quieter hour: no page

    @field_validator("target")
    @classmethod
    def _target(cls, target: float) -> float:
        if not 0 < target < 1:
            raise ValueError(f"expected a target above 0% and below 100%, got {target * 100:g}%")
        return target

    @field_validator("window")
    @classmethod
    def _window(cls, window: float) -> float:
        if window < HOUR:
            raise ValueError(f"expected at least 1h, got {format_duration(window)}")
        return window

    @model_validator(mode="after")
    def _one_entity(self) -> Self:
        if (self.listener is None) == (self.pool is None):
            raise ValueError("expected exactly one of listener or pool")
        return self

    def objective(self) -> Objective:
        entity = ("listener", self.listener) if self.listener else ("pool", str(self.pool))
        return Objective(self.name, entity, self.target, self.window, self.kind,
                         self.min_requests)


class UptimeConfig(_Model):
    """The uptime history: how long it is kept, the planned maintenance windows, the SLOs
    and the webhooks their alerts and incidents are sent to."""

    retention: Duration = 400 * DAY  # a year and a month: a yearly report has all it needs
    maintenance: list[MaintenanceConfig] = []
    slos: list[SloConfig] = []
    webhooks: list[WebhookUrl] = []

    @field_validator("retention")
    @classmethod
    def _retention(cls, retention: float) -> float:
        if retention < DAY:
            raise ValueError(f"expected at least 1d, got {format_duration(retention)}")
        return retention

    def rules(self) -> list[MaintenanceRule]:
        return [window.rule() for window in self.maintenance]

    def objectives(self) -> list[Objective]:
        return [slo.objective() for slo in self.slos]


class Config(_Model):
    node: NodeConfig = Field(default_factory=NodeConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    listeners: list[ListenerConfig] = Field(min_length=1)
    pools: dict[Name, PoolConfig] = Field(min_length=1)
    cluster: ClusterConfig | None = None  # absent: this node runs alone
    uptime: UptimeConfig = Field(default_factory=UptimeConfig)

    @model_validator(mode="after")
    def _cross_checked(self, info: ValidationInfo) -> Self:
        if info.context and info.context.get(CROSS_CHECKED):
            return self
        problems = cross_field_problems(self.model_dump(exclude_unset=True))
        if problems:
            raise ModelProblems(problems)
        return self
