"""The ``cluster:`` section: which coordinator the nodes share, the lease, the mode, the VIP.

Absent, the node runs alone. Its checks that span several keys (a coordinator's settings
given for the other coordinator, a VIP or failback in active-active mode, an etcd lease
that is not whole seconds) are written once here and run both by the model and by the
loader's cross-field pass (:func:`cluster_problems`), which sees them even when another
field of the section failed.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from ninelives.config.fields import Duration, Loc, ModelProblems
from ninelives.units import describe_input, format_duration, parse_duration

# Machine-wide, so that nodes on one machine meet without being told where; under
# /var/lib, so that it survives reboots and fencing tokens keep growing across them.
DEFAULT_LOCAL_PATH = Path("/var/lib/ninelives/cluster.db")
DEFAULT_ETCD_ENDPOINT = "http://127.0.0.1:2379"
# A leader renews every third of the lease and steps down at two thirds; below half a
# second the remaining third (the margin for a paused process, a busy machine and the
# step-down itself) would be under 170 ms.
MIN_LEASE_TTL = 0.5
DEFAULT_PRIORITY = 100  # keepalived's default priority

IpInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _to_endpoint(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        port = None
        parts = urlsplit("")
    if (parts.scheme not in ("http", "https") or not parts.hostname or port is None
            or parts.path not in ("", "/") or parts.query or parts.fragment):
        raise ValueError(
            f"expected an etcd client URL like http://127.0.0.1:2379, got {describe_input(value)}"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _to_prefix(value: Any) -> str:
    text = value.rstrip("/") if isinstance(value, str) else ""
    if not text.startswith("/") or any(c.isspace() for c in text):
        raise ValueError(
            f"expected a key prefix like /ninelives/prod, got {describe_input(value)}"
        )
    return text


def _to_vip(value: Any) -> IpInterface:
    expected = f"expected an address with its prefix length like 10.0.0.100/24, " \
               f"got {describe_input(value)}"
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(expected)
    try:
        vip = ipaddress.ip_interface(value.strip())
    except ValueError:
        raise ValueError(expected) from None
    ip, network = vip.ip, vip.network
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
        raise ValueError(f"expected an address hosts can reach, got {describe_input(value)}")
    edges = (network.network_address, network.broadcast_address)
    if isinstance(ip, ipaddress.IPv4Address) and network.prefixlen < 31 and ip in edges:
        raise ValueError(
            f"{ip} is the {'network' if ip == edges[0] else 'broadcast'} address of {network}"
        )
    return vip


def _to_interface(value: Any) -> str:
    # The kernel's dev_valid_name(): at most 15 bytes, not . or .., no /, : or space.
    text = value if isinstance(value, str) else ""
    if (not text or len(text.encode()) > 15 or text in (".", "..")
            or any(c in "/:" or c.isspace() for c in text)):
        raise ValueError(
            "expected a network interface name like eth0 (at most 15 characters, "
            f"no /, : or spaces), got {describe_input(value)}"
        )
    return text


EtcdEndpoint = Annotated[
    str, PlainValidator(_to_endpoint),
    WithJsonSchema({"type": "string", "examples": [DEFAULT_ETCD_ENDPOINT]}),
]
KeyPrefix = Annotated[
    str, PlainValidator(_to_prefix),
    WithJsonSchema({"type": "string", "pattern": r"^/\S*$", "examples": ["/ninelives/prod"]}),
]
VipAddress = Annotated[
    IpInterface, PlainValidator(_to_vip), PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["10.0.0.100/24"]}),
]
InterfaceName = Annotated[
    str, PlainValidator(_to_interface),
    WithJsonSchema({"type": "string", "maxLength": 15, "examples": ["eth0"]}),
]


class LocalCoordinatorConfig(_Model):
    # Every node of the cluster must name the same file: that is what makes them one.
    path: Path = DEFAULT_LOCAL_PATH


class EtcdConfig(_Model):
    endpoints: list[EtcdEndpoint] = Field(
        default_factory=lambda: [DEFAULT_ETCD_ENDPOINT], min_length=1
    )
    prefix: KeyPrefix = "/ninelives"  # every key of this cluster is below it


class VipConfig(_Model):
    address: VipAddress
    interface: InterfaceName


class ClusterConfig(_Model):
    coordinator: Literal["local", "etcd"] = "local"
    local: LocalCoordinatorConfig = Field(default_factory=LocalCoordinatorConfig)
    etcd: EtcdConfig = Field(default_factory=EtcdConfig)
    lease_ttl: Duration = 2.0
    mode: Literal["active-passive", "active-active"] = "active-passive"
    vip: VipConfig | None = None
    # Failback: a node with preempt on takes the lead back from a leader of lower priority
    # (keepalived's priority and preempt; its default is to preempt, ours is to stay).
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=255)
    preempt: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = cluster_problems(
            {key: getattr(self, key) for key in self.model_fields_set}
        )
        if problems:
            raise ModelProblems(problems)
        return self


def cluster_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """The section's cross-key problems, from raw or validated values, paths relative to it."""
    problems: list[tuple[Loc, str]] = []
    coordinator = data.get("coordinator", "local")
    if coordinator in ("local", "etcd"):
        other = "etcd" if coordinator == "local" else "local"
        if other in data:
            problems.append(((other,), f"only with coordinator: {other}, "
                                       f"got coordinator: {coordinator}"))
    ttl = _seconds(data.get("lease_ttl", 2.0))
    if ttl is not None and ttl < MIN_LEASE_TTL:
        problems.append((("lease_ttl",), f"expected at least {format_duration(MIN_LEASE_TTL)} "
                                         f"(the leader's margin is a third of it), "
                                         f"got {format_duration(ttl)}"))
    elif ttl is not None and coordinator == "etcd" and ttl != math.floor(ttl):
        problems.append((("lease_ttl",), "etcd grants leases in whole seconds, "
                                         f"got {format_duration(ttl)}"))
    if data.get("mode") == "active-active":
        if data.get("vip") is not None:
            problems.append((("vip",), "only with mode: active-passive "
                                       "(in active-active every node serves its own addresses)"))
        for key in ("preempt", "priority"):
            if key in data:
                problems.append(((key,), "only with mode: active-passive "
                                         "(in active-active nobody leads)"))
    return problems


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        seconds = parse_duration(value)
    except (TypeError, ValueError):
        return None  # reported by field validation
    return seconds if seconds > 0 else None
