"""What active-active nodes share, as pure decisions over snapshots (no I/O).

Two things are shared through the coordinator:

- **Operator settings** (drain, maint, ready, weight). Each pool has one plain key,
  ``runtime/POOL``, holding a JSON object of its servers' settings and the node each was
  made on: ``{"servers": {"b1": {"state": "drain", "state_on": "lb-1"}}}``. A node that
  takes a change writes the whole object back with a compare-and-set on the version it
  read (:func:`with_change`), so two changes made at once on two nodes both land. Every
  node applies what differs from its own servers (:func:`steps`); a server it does not
  have is ignored.
- **Health views**. Each node's member record (bound to its lease) carries the servers
  it sees down, per pool. A server enters a hash pool's Maglev table only if no live node
  sees it down (:func:`hash_exclusions`), so nodes whose views agree build the same table
  and send a key to the same server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ninelives.cluster.coordinator import Member
from ninelives.pool import MAX_WEIGHT, AdminState

RUNTIME_PREFIX = "runtime/"


def runtime_key(pool: str) -> str:
    return RUNTIME_PREFIX + pool


def pool_of(key: str) -> str | None:
    """The pool a ``runtime/POOL`` key is for; None for any other key."""
    if not key.startswith(RUNTIME_PREFIX) or key == RUNTIME_PREFIX:
        return None
    return key[len(RUNTIME_PREFIX):]


@dataclass(frozen=True, slots=True)
class Setting:
    """One server's shared settings; None where nobody set it. ``*_on`` name the node the
    setting was made on."""

    state: AdminState | None = None
    state_on: str = ""
    weight: int | None = None
    weight_on: str = ""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.state is not None:
            out |= {"state": self.state.value, "state_on": self.state_on}
        if self.weight is not None:
            out |= {"weight": self.weight, "weight_on": self.weight_on}
        return out


Settings = Mapping[str, Setting]


def parse_settings(text: str | None) -> dict[str, Setting]:
    """A ``runtime/POOL`` value; raise ValueError naming what is wrong with it."""
    if text is None:
        return {}
    data = json.loads(text)
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ValueError(f'expected {{"servers": {{...}}}}, got {text[:80]!r}')
    out: dict[str, Setting] = {}
    for name, entry in servers.items():
        if not isinstance(entry, dict):
            raise ValueError(f"servers.{name}: expected an object, got {entry!r}")
        state, weight = entry.get("state"), entry.get("weight")
        try:
            admin = None if state is None else AdminState(state)
        except ValueError:
            raise ValueError(f"servers.{name}.state: unknown state {state!r}") from None
        if weight is not None and (not isinstance(weight, int) or isinstance(weight, bool)
                                   or not 0 <= weight <= MAX_WEIGHT):
            raise ValueError(f"servers.{name}.weight: expected 0-{MAX_WEIGHT}, got {weight!r}")
        out[name] = Setting(admin, str(entry.get("state_on", "")), weight,
                            str(entry.get("weight_on", "")))
    return out


def format_settings(settings: Settings) -> str:
    return json.dumps({"servers": {name: s.as_dict() for name, s in settings.items()}},
                      sort_keys=True)


def with_change(
    settings: Settings, server: str, on: str, state: AdminState | None = None,
    weight: int | None = None,
) -> dict[str, Setting]:
    """``settings`` with ``server``'s state and/or weight set, as made on node ``on``."""
    setting = settings.get(server, Setting())
    if state is not None:
        setting = replace(setting, state=state, state_on=on)
    if weight is not None:
        setting = replace(setting, weight=weight, weight_on=on)
    return {**settings, server: setting}


@dataclass(frozen=True, slots=True)
class Step:
    """A change to make on this node's server; ``reason`` says where it came from."""

    server: str
    state: AdminState | None
    weight: int | None
    reason: str


def steps(settings: Settings, have: Mapping[str, tuple[AdminState, int]]) -> list[Step]:
    """What to change so that this node's servers (``have``: name -> (state, weight)) match
    the shared ``settings``. Servers this node does not have are skipped."""
    out = []
    for name, setting in sorted(settings.items()):
        if name not in have:
            continue
        state, weight = have[name]
        new_state = setting.state if setting.state not in (None, state) else None
        new_weight = setting.weight if setting.weight not in (None, weight) else None
        if new_state is None and new_weight is None:
            continue
        said = []
        if new_state is not None:
            said.append(f"{new_state.value} on {setting.state_on or 'another node'}")
        if new_weight is not None:
            said.append(f"weight {new_weight} on {setting.weight_on or 'another node'}")
        out.append(Step(name, new_state, new_weight, ", ".join(said)))
    return out


def hash_exclusions(members: Iterable[Member], me: str) -> dict[str, frozenset[str]]:
    """Per pool, the servers some live node other than ``me`` sees down: they stay out
    of the hash table on every node (this node's own view already keeps its down servers
    out)."""
    out: dict[str, set[str]] = {}
    for member in members:
        if member.name == me:
            continue
        for pool, down in member.down.items():
            out.setdefault(pool, set()).update(down)
    return {pool: frozenset(names) for pool, names in out.items()}
