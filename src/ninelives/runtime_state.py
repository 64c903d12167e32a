"""Runtime server state that must outlive a restart: drain, maint and weights.

What an operator set through the admin API (``ninelives drain app/a1``) stays set when
the node restarts; HAProxy loses it unless a server-state file is configured. The state
is one small JSON file under ``node.state_dir``, rewritten atomically (temporary file,
fsync, rename) after every change, so a crash leaves either the old or the new file.
Health is not kept: a restarted node checks every server before it serves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ninelives.pool import AdminState, Pool
from ninelives.state_file import write_json

log = logging.getLogger("ninelives.state")

FILE_NAME = "server-state.json"


def snapshot(pools: Iterable[Pool]) -> dict[str, dict[str, dict[str, Any]]]:
    """The operator-set state of every server that differs from its configuration."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for pool in pools:
        for server in pool.servers:
            entry: dict[str, Any] = {}
            if server.admin_state is not AdminState.READY:
                entry["state"] = server.admin_state.value
            if server.weight != server.config_weight:
                entry["weight"] = server.weight
            if entry:
                out.setdefault(pool.name, {})[server.name] = entry
    return out


def save(path: Path, pools: Iterable[Pool]) -> None:
    write_json(path, {"version": 1, "servers": snapshot(pools)})


def restore(path: Path, pools: dict[str, Pool]) -> list[str]:
    """Apply the saved state to ``pools``; return one sentence per server changed.

    Servers or pools that are no longer in the config are skipped (and said so); a file
    that cannot be read is reported and ignored, never fatal: serving comes first.
    """
    try:
        data = json.loads(path.read_text())
        saved = data["servers"]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable server state %s: %s", path, exc)
        return []
    applied = []
    for pool_name, servers in saved.items():
        pool = pools.get(pool_name)
        for server_name, entry in servers.items():
            if pool is None or server_name not in pool.by_name:
                log.warning("saved state for %s/%s: no such server now", pool_name, server_name)
                continue
            if "state" in entry:
                pool.set_admin_state(server_name, AdminState(entry["state"]))
                applied.append(f"{pool_name}/{server_name}: {entry['state']} (kept from before)")
            if "weight" in entry:
                pool.set_weight(server_name, int(entry["weight"]))
                applied.append(f"{pool_name}/{server_name}: weight {entry['weight']} (kept)")
    return applied
