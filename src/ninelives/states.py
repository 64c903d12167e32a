"""The state machine of a server's health: states, inputs and the transition table.

A server's health moves between :class:`Health` states on :class:`Signal` inputs from two
sources: the active checker (a check passed or failed; ``RISE``/``FALL`` are the pass or
failure that completes a ``rise``/``fall`` streak) and live traffic (outlier ejection and its
end). What an operator set (``drain``, ``maint``) is a separate, orthogonal choice: it hides
the health in the state shown (:func:`shown`) but does not stop the checks, so a drained
server that died is ``down`` the moment it is put back in service.

:func:`next_health` is the whole decision: a lookup in :data:`TRANSITIONS`. An input with no
entry for the current state is a bug in the caller and raises :class:`ImpossibleTransition`,
which names the state and the input (as h11 does).
"""

from __future__ import annotations

from enum import StrEnum


class Health(StrEnum):
    UNCHECKED = "unchecked"  # added, not checked yet; never balanced to
    UP = "up"
    FALLING = "falling"  # up, but its last check(s) failed: not yet ``fall`` of them
    DOWN = "down"
    RISING = "rising"  # down, but its last check(s) passed: not yet ``rise`` of them
    EJECTED = "ejected"  # up by its checks, out of rotation for failing live traffic


class Signal(StrEnum):
    PASS = "check passed"
    FAIL = "check failed"
    RISE = "rise checks passed"  # the pass that completes the ``rise`` streak
    FALL = "fall checks failed"  # the failure that completes the ``fall`` streak
    EJECT = "eject"  # live traffic failed ``consecutive_failures`` times in a row
    RETURN = "ejection over"


# (state, input) -> next state. What is not here cannot happen.
TRANSITIONS: dict[tuple[Health, Signal], Health] = {
    # The first check decides alone: a dead server is never balanced to at start-up, a live
    # one does not wait ``rise`` intervals.
    (Health.UNCHECKED, Signal.PASS): Health.UP,
    (Health.UNCHECKED, Signal.FAIL): Health.DOWN,
    (Health.UP, Signal.PASS): Health.UP,
    (Health.UP, Signal.FAIL): Health.FALLING,
    (Health.UP, Signal.FALL): Health.DOWN,
    (Health.UP, Signal.EJECT): Health.EJECTED,
    (Health.FALLING, Signal.PASS): Health.UP,
    (Health.FALLING, Signal.FAIL): Health.FALLING,
    (Health.FALLING, Signal.FALL): Health.DOWN,
    (Health.FALLING, Signal.EJECT): Health.EJECTED,
    (Health.DOWN, Signal.FAIL): Health.DOWN,
    (Health.DOWN, Signal.PASS): Health.RISING,
    (Health.DOWN, Signal.RISE): Health.UP,
    (Health.RISING, Signal.PASS): Health.RISING,
    (Health.RISING, Signal.RISE): Health.UP,
    (Health.RISING, Signal.FAIL): Health.DOWN,
    # Ejected, the checks go on: a check streak that finds it down makes it down (and it
    # then comes back by ``rise`` passes, like any down server); otherwise it returns when
    # its ejection is over.
    (Health.EJECTED, Signal.PASS): Health.EJECTED,
    (Health.EJECTED, Signal.FAIL): Health.EJECTED,
    (Health.EJECTED, Signal.FALL): Health.DOWN,
    (Health.EJECTED, Signal.RETURN): Health.UP,
}

# Live traffic may only eject a server that is in rotation by its checks.
EJECTABLE = frozenset({Health.UP, Health.FALLING})
# Up by its checks: may take traffic unless ejected or set aside by an operator.
IN_SERVICE = frozenset({Health.UP, Health.FALLING})


class ImpossibleTransition(Exception):
    """An input that the current state has no transition for (a bug in the caller)."""

    def __init__(self, state: Health, signal: Signal) -> None:
        super().__init__(f"server in state {state.value!r} cannot take input {signal.value!r}")
        self.state = state
        self.signal = signal


def next_health(state: Health, signal: Signal) -> Health:
    try:
        return TRANSITIONS[state, signal]
    except KeyError:
        raise ImpossibleTransition(state, signal) from None


def shown(health: Health, admin: str) -> str:
    """The one state shown for a server: what an operator set wins over its health."""
    return health.value if admin == "ready" else admin
