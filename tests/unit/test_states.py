"""The server health state machine: its transition table, driven without I/O."""

from __future__ import annotations

import random

import pytest

from ninelives.health import check_signal, initial, observe
from ninelives.states import (
    TRANSITIONS,
    Health,
    ImpossibleTransition,
    Signal,
    next_health,
    shown,
)


def test_every_state_but_unchecked_can_be_reached_and_left() -> None:
    targets = {new for new in TRANSITIONS.values()}
    sources = {old for old, _ in TRANSITIONS}
    assert targets == set(Health) - {Health.UNCHECKED}
    assert sources == set(Health)


def test_an_impossible_input_raises_naming_the_state_and_the_input() -> None:
    with pytest.raises(ImpossibleTransition) as caught:
        next_health(Health.DOWN, Signal.EJECT)
    assert str(caught.value) == "server in state 'down' cannot take input 'eject'"
    with pytest.raises(ImpossibleTransition):
        next_health(Health.UP, Signal.RETURN)


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        ([Signal.PASS], Health.UP),
        ([Signal.FAIL], Health.DOWN),
        ([Signal.PASS, Signal.FAIL], Health.FALLING),
        ([Signal.PASS, Signal.FAIL, Signal.PASS], Health.UP),
        ([Signal.PASS, Signal.FAIL, Signal.FALL], Health.DOWN),
        ([Signal.FAIL, Signal.PASS], Health.RISING),
        ([Signal.FAIL, Signal.PASS, Signal.FAIL], Health.DOWN),
        ([Signal.FAIL, Signal.PASS, Signal.RISE], Health.UP),
        ([Signal.PASS, Signal.EJECT, Signal.PASS, Signal.FAIL], Health.EJECTED),
        ([Signal.PASS, Signal.EJECT, Signal.RETURN], Health.UP),
        ([Signal.PASS, Signal.EJECT, Signal.FALL], Health.DOWN),
        ([Signal.PASS, Signal.EJECT, Signal.FALL, Signal.RISE], Health.UP),
    ],
)
def test_paths_through_the_table(signals: list[Signal], expected: Health) -> None:
    state = Health.UNCHECKED
    for signal in signals:
        state = next_health(state, signal)
    assert state is expected


def test_what_an_operator_set_is_shown_over_health() -> None:
    assert shown(Health.DOWN, "ready") == "down"
    assert shown(Health.DOWN, "drain") == "drain"
    assert shown(Health.EJECTED, "maint") == "maint"


@pytest.mark.parametrize(("rise", "fall"), [(1, 1), (2, 3), (3, 2), (5, 5)])
def test_random_check_results_never_make_an_impossible_transition(rise: int, fall: int) -> None:
    """The checker's streak counting and the table agree: whatever the results, the inputs
    it derives are always defined, and the table's up/down matches the checker's."""
    rng = random.Random(rise * 100 + fall)
    for _ in range(200):
        ok = rng.random() < 0.5
        streak = initial(ok)
        state = next_health(Health.UNCHECKED, Signal.PASS if ok else Signal.FAIL)
        for _ in range(50):
            ok = rng.random() < 0.6
            streak, changed = observe(streak, ok, rise, fall)
            state = next_health(state, check_signal(ok, changed))
            assert (state in (Health.UP, Health.FALLING)) == streak.healthy
            assert (state is Health.FALLING) == (streak.healthy and streak.failures > 0)
            assert (state is Health.RISING) == (not streak.healthy and streak.successes > 0)
