"""From the ``cluster:`` section to an open coordinator."""

from __future__ import annotations

from ninelives.cluster.coordinator import Coordinator
from ninelives.cluster.etcd import EtcdCoordinator
from ninelives.cluster.local import LocalCoordinator
from ninelives.config import ClusterConfig


async def open_coordinator(cluster: ClusterConfig) -> Coordinator:
    """Open the configured coordinator; raise CoordinatorUnavailable (phase ``open``) if not."""
    if cluster.coordinator == "etcd":
        return await EtcdCoordinator.open(
            cluster.etcd.endpoints, cluster.etcd.prefix, cluster.lease_ttl
        )
    return await LocalCoordinator.open(cluster.local.path, cluster.lease_ttl)
