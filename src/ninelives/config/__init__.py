"""The ninelives config: YAML in, frozen pydantic models out, every problem with its path.

Everything other modules need is importable from here; the submodules are
``fields`` (value types), ``models``, ``checks`` (cross-field), ``errors`` and ``loader``.
"""

from ninelives.config.cluster import ClusterConfig, EtcdConfig, LocalCoordinatorConfig, VipConfig
from ninelives.config.errors import ConfigError, ReloadError
from ninelives.config.loader import config_json_schema, load_config, parse_config
from ninelives.config.models import (
    AdminConfig,
    Config,
    HealthConfig,
    HttpCheck,
    ListenerConfig,
    NodeConfig,
    OutlierConfig,
    PoolConfig,
    RetriesConfig,
    RouteConfig,
    RouteMatch,
    ServerConfig,
    StickyConfig,
    TcpCheck,
    TierConfig,
    TimeoutsConfig,
)

__all__ = [
    "AdminConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "EtcdConfig",
    "HealthConfig",
    "HttpCheck",
    "ListenerConfig",
    "LocalCoordinatorConfig",
    "NodeConfig",
    "OutlierConfig",
    "PoolConfig",
    "ReloadError",
    "RetriesConfig",
    "RouteConfig",
    "RouteMatch",
    "ServerConfig",
    "StickyConfig",
    "TcpCheck",
    "TierConfig",
    "TimeoutsConfig",
    "VipConfig",
    "config_json_schema",
    "load_config",
    "parse_config",
]
