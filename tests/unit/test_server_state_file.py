"""Saving and restoring operator-set server state (pure file I/O, no sockets)."""

from __future__ import annotations

from pathlib import Path

from ninelives import runtime_state
from ninelives.config import parse_config
from ninelives.pool import AdminState, Pool
from ninelives.states import Health

CONFIG = """
listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]
pools:
  app:
    servers:
      - {name: a1, address: 127.0.0.1:1}
      - {name: a2, address: 127.0.0.1:2, weight: 3}
"""


def pools() -> dict[str, Pool]:
    config = parse_config(CONFIG)
    return {name: Pool(name, pool, initial=Health.UP) for name, pool in config.pools.items()}


def test_round_trip_keeps_only_what_differs_from_the_config(tmp_path: Path) -> None:
    before = pools()
    before["app"].set_admin_state("a1", AdminState.DRAIN)
    before["app"].set_weight("a2", 3)  # the configured weight: nothing to keep
    path = tmp_path / "state" / runtime_state.FILE_NAME
    runtime_state.save(path, before.values())
    assert runtime_state.snapshot(before.values()) == {"app": {"a1": {"state": "drain"}}}
    after = pools()
    assert runtime_state.restore(path, after) == ["app/a1: drain (kept from before)"]
    assert after["app"].by_name["a1"].admin_state is AdminState.DRAIN
    assert [s.name for s in after["app"].candidates] == ["a2"]


def test_a_missing_or_corrupt_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / runtime_state.FILE_NAME
    fresh = pools()
    assert runtime_state.restore(path, fresh) == []
    path.write_text("{not json")
    assert runtime_state.restore(path, fresh) == []
    assert all(s.admin_state is AdminState.READY for s in fresh["app"].servers)
