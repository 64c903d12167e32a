"""The health state machine: rise/fall counting, flap damping, the decisive first check."""

from __future__ import annotations

import random
import shlex

import pytest

from ninelives.address import Address
from ninelives.config import HealthConfig, parse_config
from ninelives.health import (
    CheckResult,
    HealthState,
    check_interval,
    command_line,
    initial,
    judge_exit,
    observe,
    reason,
)
from ninelives.pool import Pool, Server
from ninelives.states import Health


def make_server(name: str, address: Address) -> Server:
    cfg = parse_config(
        "listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]\n"
        "pools: {app: {servers: [{name: s, address: 127.0.0.1:9000}]}}\n",
        env={},
    )
    return Server(Pool("app", cfg.pools["app"], initial=Health.UP), name, address, 1, 0, "default")


def run(state: HealthState, results: list[bool], rise: int, fall: int) -> list[HealthState]:
    states = []
    for ok in results:
        state, _ = observe(state, ok, rise, fall)
        states.append(state)
    return states


def test_initial_is_decided_by_the_first_check() -> None:
    assert initial(True) == HealthState(healthy=True, successes=1, failures=0)
    assert initial(False) == HealthState(healthy=False, successes=0, failures=1)


def test_up_server_goes_down_after_fall_consecutive_failures() -> None:
    state = initial(True)
    state, changed = observe(state, False, 2, 3)
    assert (state.healthy, state.failures, changed) == (True, 1, False)
    state, changed = observe(state, False, 2, 3)
    assert (state.healthy, state.failures, changed) == (True, 2, False)
    state, changed = observe(state, False, 2, 3)
    assert (state.healthy, state.failures, changed) == (False, 3, True)
    # Further failures keep counting but are no transition.
    state, changed = observe(state, False, 2, 3)
    assert (state.healthy, state.failures, changed) == (False, 4, False)


def test_down_server_comes_up_after_rise_consecutive_successes() -> None:
    state = initial(False)
    state, changed = observe(state, True, 3, 2)
    assert (state.healthy, state.successes, state.failures, changed) == (False, 1, 0, False)
    state, changed = observe(state, True, 3, 2)
    assert (state.healthy, changed) == (False, False)
    state, changed = observe(state, True, 3, 2)
    assert (state.healthy, state.successes, changed) == (True, 3, True)


def test_a_success_resets_the_failure_streak() -> None:
    states = run(initial(True), [False, True, False, True, False], rise=2, fall=2)
    assert all(s.healthy for s in states)
    assert [s.failures for s in states] == [1, 0, 1, 0, 1]


def test_fall_of_one_reacts_to_a_single_failure() -> None:
    state, changed = observe(initial(True), False, 1, 1)
    assert (state.healthy, changed) == (False, True)
    state, changed = observe(state, True, 1, 1)
    assert (state.healthy, changed) == (True, True)


@pytest.mark.parametrize("seed", range(20))
def test_flapping_never_changes_state_before_thresholds(seed: int) -> None:
    rng = random.Random(seed)
    rise, fall = rng.randint(2, 5), rng.randint(2, 5)
    state = initial(rng.random() < 0.5)
    streak_ok, streak_fail = state.successes, state.failures
    for _ in range(200):
        ok = rng.random() < 0.5
        streak_ok = streak_ok + 1 if ok else 0
        streak_fail = 0 if ok else streak_fail + 1
        before = state.healthy
        state, changed = observe(state, ok, rise, fall)
        assert changed == (state.healthy != before)
        if changed and state.healthy:
            assert streak_ok >= rise
        if changed and not state.healthy:
            assert streak_fail >= fall
        # The streak counters are exactly the run of equal results.
        assert (state.successes, state.failures) == (streak_ok, streak_fail)


def test_strict_alternation_never_flips_with_thresholds_of_two() -> None:
    for start in (True, False):
        states = run(initial(start), [not start, start] * 50, rise=2, fall=2)
        assert {s.healthy for s in states} == {start}


def test_reason_sentences() -> None:
    assert reason(HealthState(True, 2, 0), "HTTP 200") == "2 checks passed: HTTP 200"
    assert reason(HealthState(False, 0, 1), "connect refused") == "1 check failed: connect refused"
    assert (
        reason(HealthState(True, 0, 1), "timeout after 500ms")
        == "1 check failed: timeout after 500ms"
    )


# -- how soon the next check comes (fastinter / downinter) --------------------------------

FAST_AND_DOWN = HealthConfig(interval=2.0, timeout=0.5, fast_interval=0.2, down_interval=5.0)


def test_a_steady_up_server_is_checked_every_interval() -> None:
    assert check_interval(initial(True), FAST_AND_DOWN) == 2.0
    assert check_interval(HealthState(True, 7, 0), FAST_AND_DOWN) == 2.0


def test_a_falling_server_is_checked_at_the_fast_interval_until_it_is_down() -> None:
    health = FAST_AND_DOWN  # fall 2
    state, _ = observe(initial(True), False, health.rise, health.fall)
    assert (state.healthy, check_interval(state, health)) == (True, 0.2)
    state, _ = observe(state, False, health.rise, health.fall)
    assert (state.healthy, check_interval(state, health)) == (False, 5.0)


def test_a_down_server_is_checked_every_down_interval_and_fast_once_it_rises() -> None:
    health = FAST_AND_DOWN  # rise 2
    down = initial(False)
    assert check_interval(down, health) == 5.0
    rising, _ = observe(down, True, health.rise, health.fall)
    assert (rising.healthy, check_interval(rising, health)) == (False, 0.2)
    # A failed check in the middle of the rise: down again, no streak under way.
    fell_back, _ = observe(rising, False, health.rise, health.fall)
    assert check_interval(fell_back, health) == 5.0
    up, _ = observe(rising, True, health.rise, health.fall)
    assert (up.healthy, check_interval(up, health)) == (True, 2.0)


def test_a_passed_check_ends_the_fast_checks_of_an_up_server() -> None:
    state, _ = observe(initial(True), False, 2, 3)
    assert check_interval(state, FAST_AND_DOWN) == 0.2
    state, _ = observe(state, True, 2, 3)
    assert check_interval(state, FAST_AND_DOWN) == 2.0


def test_fast_and_down_intervals_default_to_shares_of_the_interval() -> None:
    health = HealthConfig()
    assert (health.interval, health.fast_every, health.down_every) == (1.0, 0.25, 0.5)
    slow = HealthConfig(interval=3600.0, timeout=1.0)  # "checks off" stays off
    assert (slow.fast_every, slow.down_every) == (900.0, 1800.0)
    assert check_interval(HealthState(True, 0, 1), health) == 0.25
    assert check_interval(HealthState(False, 0, 1), health) == 0.5


@pytest.mark.parametrize("seed", range(10))
def test_the_interval_follows_the_streak_whatever_the_results(seed: int) -> None:
    rng = random.Random(seed)
    health = FAST_AND_DOWN
    state = initial(rng.random() < 0.5)
    for _ in range(200):
        state, _ = observe(state, rng.random() < 0.5, 3, 3)
        under_way = state.failures > 0 if state.healthy else state.successes > 0
        expected = 0.2 if under_way else (2.0 if state.healthy else 5.0)
        assert check_interval(state, health) == expected


# -- command checks: the verdict and the command line --------------------------------------


def test_exit_zero_passes_and_shows_the_first_line_of_stdout() -> None:
    assert judge_exit(0, b"\n  accepting connections \n", b"warning") == CheckResult(
        True, "exit 0: accepting connections"
    )
    assert judge_exit(0, b"", b"") == CheckResult(True, "exit 0")


def test_a_failing_exit_shows_stderr_first_truncated() -> None:
    result = judge_exit(3, b"stdout line", b"\nno route to db\x07 at 10.0.0.1\nmore")
    assert result == CheckResult(False, "exit 3: no route to db at 10.0.0.1")
    assert judge_exit(1, b"only stdout", b"").detail == "exit 1: only stdout"
    long = judge_exit(2, b"", b"x" * 500).detail
    assert long == "exit 2: " + "x" * 97 + "..." and len(long) == len("exit 2: ") + 100


def test_control_characters_and_bad_utf8_do_not_reach_the_reason() -> None:
    assert judge_exit(4, b"", b"bad\tbyte \xff\r\n").detail == "exit 4: bad byte \ufffd"


def test_a_command_killed_by_a_signal_did_not_answer() -> None:
    assert judge_exit(-9, b"", b"") == CheckResult(False, "killed by SIGKILL", answered=False)


def test_placeholders_are_replaced_shell_quoted_and_other_braces_kept() -> None:
    server = make_server("a1", Address("10.0.0.1", 5432))
    assert command_line("pg_isready -h {host} -p {port} # {server}", server) == (
        "pg_isready -h 10.0.0.1 -p 5432 # a1"
    )
    odd = make_server("a1", Address("::1", 80))
    assert command_line("awk '{print $1}' {host}:{port} {hostname}", odd) == (
        "awk '{print $1}' ::1:80 {hostname}"
    )
    assert shlex.split(command_line("check {host}", make_server("x", Address("a b;c", 1)))) == [
        "check", "a b;c"
    ]
