"""Leader election decisions, with made-up times: each case, then whole clusters simulated
on a fake clock and a fake store (hypothesis picks the partitions and the wake-ups)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ninelives.cluster.coordinator import Lease, LeaseLost
from ninelives.cluster.election import (
    TRANSITIONS,
    Action,
    Decision,
    Failback,
    Handover,
    Holder,
    ImpossibleTransition,
    Role,
    Timing,
    View,
    decide,
    transition,
)

TTL = 2.0
TIMING = Timing(TTL)


def lease(renewed_at: float, token: int = 7, ttl: float = TTL) -> Lease:
    return Lease("leader", "lb-1", token=token, id=token, ttl=ttl, renewed_at=renewed_at)


def leader_view(now: float, renewed_at: float = 0.0, **changes: object) -> View:
    view = View(me="lb-1", now=now, role=Role.LEADER, holder=Holder("lb-1", 7),
                lease=lease(renewed_at), timing=TIMING)
    return replace(view, **changes)


def follower_view(now: float = 10.0, **changes: object) -> View:
    view = View(me="lb-1", now=now, role=Role.FOLLOWER, holder=None, lease=None, timing=TIMING)
    return replace(view, **changes)


# -- the leader ----------------------------------------------------------------------------


def test_a_leader_early_in_its_lease_does_nothing_until_a_third() -> None:
    decision = decide(leader_view(now=0.5))
    assert decision == Decision(
        Action.HOLD, "no action: I am lb-1, the leader with the lease (token 7)",
        Role.LEADER, check_by=pytest.approx(TTL / 3),
    )


def test_a_leader_renews_from_a_third_and_must_finish_by_two_thirds() -> None:
    decision = decide(leader_view(now=0.7))
    assert decision.action is Action.RENEW and decision.role is Role.LEADER
    assert decision.reason == (
        "renewing: I am lb-1, the leader with the lease (token 7, 1.30s left)"
    )
    assert decision.check_by == pytest.approx(2 * TTL / 3)


def test_a_leader_that_could_not_renew_within_two_thirds_steps_down() -> None:
    view = leader_view(now=1.4, renew_failed_at=1.3, renew_error="renew: etcd unreachable")
    decision = decide(view)
    assert (decision.action, decision.role) == (Action.STEP_DOWN, Role.FOLLOWER)
    assert decision.reason == (
        "stepping down: could not renew within 2/3 of the lease (renewed 1.40s ago, "
        "0.60s before it can expire; last error: renew: etcd unreachable)"
    )
    # Exactly at the limit counts too: the margin is never less than a third.
    assert decide(leader_view(now=2 * TTL / 3)).action is Action.STEP_DOWN


def test_a_failed_renewal_is_retried_at_a_twentieth_of_the_lease() -> None:
    failed = leader_view(now=0.75, renew_failed_at=0.72, renew_error="renew: timed out")
    decision = decide(failed)
    assert decision.action is Action.HOLD
    assert decision.reason == (
        "renewal failed (renew: timed out); I am lb-1, still the leader with the lease "
        "(token 7) for 0.58s unless a retry succeeds"
    )
    assert decision.check_by == pytest.approx(0.72 + TTL / 20)
    assert decide(replace(failed, now=0.82)).action is Action.RENEW
    # A failure before the last successful renewal is history.
    assert decide(leader_view(now=0.75, renewed_at=0.05, renew_failed_at=0.01)).action \
        is Action.RENEW


def test_a_retry_never_waits_past_the_step_down_point() -> None:
    decision = decide(leader_view(now=1.3, renew_failed_at=1.3, renew_error="x"))
    assert decision.action is Action.HOLD
    assert decision.check_by == pytest.approx(2 * TTL / 3)


def test_a_leader_whose_key_names_someone_else_steps_down() -> None:
    decision = decide(leader_view(now=0.1, holder=Holder("lb-2", 9)))
    assert decision.action is Action.STEP_DOWN
    assert decision.reason == (
        "stepping down: the leader key names lb-2 (token 9), not me (token 7)"
    )
    gone = decide(leader_view(now=0.1, holder=None))
    assert gone.reason == "stepping down: the leader key is gone, not me (token 7)"
    # Its own name with another token is another term: not ours either.
    assert decide(leader_view(now=0.1, holder=Holder("lb-1", 8))).action is Action.STEP_DOWN


def test_a_leader_that_lost_its_lease_steps_down_saying_why() -> None:
    decision = decide(leader_view(
        now=0.8, lease=None, lost_because="renew: leader: the lease expired 0.1s ago"))
    assert decision == Decision(
        Action.STEP_DOWN,
        "stepping down: lost the leader lease (renew: leader: the lease expired 0.1s ago)",
        Role.FOLLOWER, 0.8,
    )


# -- a follower ----------------------------------------------------------------------------


def test_a_ready_follower_tries_to_take_a_free_lead() -> None:
    decision = decide(follower_view())
    assert decision == Decision(
        Action.ACQUIRE, "trying to take the lead: no node holds the leader lease",
        Role.FOLLOWER, 10.0,
    )


def test_a_follower_that_is_not_ready_does_not_take_the_lead() -> None:
    decision = decide(follower_view(ready=False, not_ready_because="listener web not bound"))
    assert decision.action is Action.WAIT
    assert decision.reason == (
        "not taking the lead: nobody leads, but I am not ready (listener web not bound)"
    )
    assert decision.check_by == pytest.approx(10.0 + TTL / 3)


def test_a_follower_follows_the_holder() -> None:
    decision = decide(follower_view(holder=Holder("lb-2", 7)))
    assert (decision.action, decision.role) == (Action.FOLLOW, Role.FOLLOWER)
    assert decision.reason == "no action: following lb-2, the leader with the lease (token 7)"


def test_a_lease_left_by_an_earlier_run_of_this_node_is_left_to_expire() -> None:
    decision = decide(follower_view(holder=Holder("lb-1", 5)))
    assert decision.action is Action.WAIT
    assert decision.reason == (
        "waiting: the leader lease names me but is from an earlier run (token 5); "
        "it will expire"
    )


def test_a_follower_holding_a_fresh_lease_takes_the_lead() -> None:
    decision = decide(follower_view(now=0.1, lease=lease(0.0), holder=Holder("lb-1", 7)))
    assert decision == Decision(
        Action.PROMOTE, "taking the lead: I am lb-1, holding the leader lease (token 7)",
        Role.LEADER, 0.1,
    )


def test_a_lease_that_came_too_late_to_act_on_is_given_back() -> None:
    decision = decide(follower_view(now=1.5, lease=lease(0.0)))
    assert (decision.action, decision.role) == (Action.RELEASE, Role.FOLLOWER)
    assert decision.reason == (
        "giving the leader lease back: it was granted 1.50s ago (token 7), "
        "too close to its end to act on"
    )


# -- the state machine ---------------------------------------------------------------------


def test_impossible_transitions_raise_naming_the_node_role_and_action() -> None:
    with pytest.raises(ImpossibleTransition, match="lb-1: no transition from leader on acquire"):
        transition("lb-1", Role.LEADER, Action.ACQUIRE)
    with pytest.raises(ImpossibleTransition):
        transition("lb-1", Role.FOLLOWER, Action.STEP_DOWN)
    assert {role for role, _ in TRANSITIONS} == set(Role)


def test_timing_fractions_must_leave_a_margin() -> None:
    with pytest.raises(ValueError, match="renew_at < step_down_at"):
        Timing(TTL, renew_at=0.7, step_down_at=0.6)
    with pytest.raises(ValueError):
        Timing(TTL, step_down_at=1.0)


# -- whole clusters on a fake clock ----------------------------------------------------------


@dataclass
class FakeStore:
    """The leader key with an expiry on the fake clock, as a coordinator keeps it; the
    switchover key (a handover, with its own expiry); each node's priority (its member
    record)."""

    name: str | None = None
    token: int = 0
    expires: float = 0.0
    revision: int = 0
    handover: Handover | None = None
    handover_expires: float = 0.0
    priorities: dict[str, int] = field(default_factory=dict)

    def requested(self, now: float) -> Handover | None:
        return self.handover if self.handover_expires > now else None

    def request(self, handover: Handover, now: float) -> bool:
        if self.requested(now) is not None:
            return False
        self.handover, self.handover_expires = handover, now + TTL
        return True

    def holder(self, now: float) -> Holder | None:
        return Holder(self.name, self.token) if self.name and self.expires > now else None

    def acquire(self, name: str, now: float) -> Lease | None:
        if self.holder(now) is not None:
            return None
        self.revision += 1
        self.name, self.token, self.expires = name, self.revision, now + TTL
        return Lease("leader", name, self.revision, self.revision, TTL, now)

    def renew(self, held: Lease, now: float) -> Lease:
        if self.holder(now) != Holder(held.value, held.token):
            raise LeaseLost("renew", "leader: the lease expired")
        self.expires = now + TTL
        return replace(held, renewed_at=now)

    def release(self, held: Lease, now: float) -> None:
        if self.holder(now) == Holder(held.value, held.token):
            self.name = None


@dataclass
class SimNode:
    """A node's shell: decides, does what was decided, honours check_by."""

    name: str
    role: Role = Role.FOLLOWER
    lease: Lease | None = None
    reachable: bool = True
    check_by: float = 0.0
    renew_failed_at: float | None = None
    lost_because: str = ""
    reasons: list[str] = field(default_factory=list)
    preempt: bool = False  # ready from the start (time 0), so back since then
    returned_under: Holder | None = None  # the leader seen at the first step
    started: bool = False
    preempting: bool = False  # wrote the switchover key to take the lead back

    def step(self, store: FakeStore, now: float) -> None:
        for _ in range(5):  # immediate follow-ups (acquire, then promote), as a shell does
            holder = store.holder(now) if self.reachable else _stale(store, now, self)
            if not self.started:
                self.started, self.returned_under = True, holder
            failback = None
            if self.preempt:
                failback = Failback(store.priorities[self.name],
                                    store.priorities.get(holder.name) if holder else None,
                                    0.0, self.returned_under, settle=TTL)
            view = View(self.name, now, self.role, holder, self.lease, TIMING,
                        renew_failed_at=self.renew_failed_at, renew_error="unreachable",
                        lost_because=self.lost_because,
                        handover=store.requested(now) if self.reachable else None,
                        failback=failback)
            decision = decide(view)
            self.reasons.append(decision.reason)
            self._act(decision.action, store, now)
            self.role = decision.role
            self.check_by = decision.check_by
            if decision.check_by > now:
                return
        self.check_by = now + 0.01  # the store did not answer: try again shortly

    def _act(self, action: Action, store: FakeStore, now: float) -> None:
        if action is Action.ACQUIRE and self.reachable:
            self.lease = store.acquire(self.name, now)
        elif action is Action.RENEW and self.lease is not None:
            if not self.reachable:
                self.renew_failed_at = now
                return
            try:
                self.lease = store.renew(self.lease, now)
                self.renew_failed_at = None
            except LeaseLost as lost:
                self.lease, self.lost_because = None, str(lost)
        elif action in (Action.STEP_DOWN, Action.RELEASE):
            if self.lease is not None and self.reachable:
                store.release(self.lease, now)
            self.lease = None
        elif action is Action.PREEMPT and self.reachable:
            holder = store.holder(now)
            if holder is not None:
                self.preempting = store.request(Handover(holder.name, self.name), now)
        elif action is Action.PROMOTE and self.preempting and self.reachable:
            store.handover, self.preempting = None, False  # handed over: the key goes


def _stale(store: FakeStore, now: float, node: SimNode) -> Holder | None:
    # Cut off, a node still believes what it read last: for a leader, itself.
    if node.lease is not None:
        return Holder(node.lease.value, node.lease.token)
    return store.holder(now)


Event = tuple[str, int, float]
events = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.just(0), st.floats(0.0, 1.5)),
        st.tuples(st.just("cut"), st.integers(0, 2), st.just(0.0)),
        st.tuples(st.just("heal"), st.integers(0, 2), st.just(0.0)),
        st.tuples(st.just("wake"), st.integers(0, 2), st.just(0.0)),
    ),
    max_size=60,
)


# name: (priority, preempt). lb-1 takes the lead back from anyone, lb-3 from lb-2 only.
NODES = {"lb-1": (200, True), "lb-2": (100, False), "lb-3": (150, True)}


def simulate(script: list[Event]) -> None:
    store = FakeStore(priorities={name: p for name, (p, _) in NODES.items()})
    nodes = [SimNode(name, preempt=preempt) for name, (_, preempt) in NODES.items()]
    now = 0.0

    def check(at: float) -> None:
        leaders = [n for n in nodes if n.role is Role.LEADER]
        assert len(leaders) <= 1, (at, [n.name for n in leaders])
        for leader in leaders:  # acting only inside its lease, with the margin left
            assert leader.lease is not None and at < leader.lease.deadline, (at, leader)

    def run_until(target: float) -> None:
        nonlocal now
        while True:
            due = min(nodes, key=lambda n: n.check_by)
            if due.check_by > target:
                break
            now = max(now, due.check_by)
            check(now)
            due.step(store, now)
            check(now)
        now = target
        check(now)

    for kind, index, amount in script:
        if kind == "advance":
            run_until(now + amount)
        elif kind == "cut":
            nodes[index].reachable = False
        elif kind == "heal":
            nodes[index].reachable = True
        else:
            nodes[index].step(store, now)
            check(now)
    # Everyone reachable again: within two leases exactly one node leads.
    for node in nodes:
        node.reachable = True
    run_until(now + 2 * TTL)
    assert sum(n.role is Role.LEADER for n in nodes) == 1, [n.reasons[-1] for n in nodes]


@settings(max_examples=300, deadline=None)
@given(events)
def test_never_two_leaders_whatever_is_cut_off_and_when(script: list[Event]) -> None:
    simulate(script)


def test_a_node_that_returns_takes_the_lead_back_through_a_handover() -> None:
    store = FakeStore(priorities={"lb-1": 200, "lb-2": 100})
    two, one = SimNode("lb-2"), SimNode("lb-1", preempt=True)
    two.step(store, 0.0)
    one.step(store, 0.0)
    assert (one.role, two.role) == (Role.FOLLOWER, Role.LEADER)
    assert one.reasons[-1].startswith("no action: following lb-2")  # not settled yet
    now = 0.0
    while one.role is not Role.LEADER:
        assert now < 2 * TTL, one.reasons[-1]
        now = round(now + 0.01, 2)
        for node in (one, two):
            if node.check_by <= now:
                node.step(store, now)
        assert not (one.role is Role.LEADER and two.role is Role.LEADER)
    assert any(r.startswith("taking the lead back: I am lb-1 (priority 200") for r in one.reasons)
    assert "stepping down: switchover requested, handing the lead to lb-1" in two.reasons
    assert store.requested(now) is None  # deleted once lb-1 led
    assert now < TTL + TTL / 3 + 0.05  # settled one lease, then at most one poll


def test_a_cut_off_leader_steps_down_before_another_takes_over() -> None:
    store = FakeStore()
    one, two = SimNode("lb-1"), SimNode("lb-2")
    one.step(store, 0.0)
    two.step(store, 0.0)
    assert (one.role, two.role) == (Role.LEADER, Role.FOLLOWER)
    assert one.reasons[-1] == "no action: I am lb-1, the leader with the lease (token 1)"
    assert two.reasons[-1] == "no action: following lb-1, the leader with the lease (token 1)"
    one.reachable = False
    now, stepped_down_at, took_over_at = 0.0, None, None
    while took_over_at is None:
        now = round(now + 0.01, 2)
        for node in (one, two):
            if node.check_by <= now:
                node.step(store, now)
        if stepped_down_at is None and one.role is Role.FOLLOWER:
            stepped_down_at = now
        if two.role is Role.LEADER:
            took_over_at = now
    assert stepped_down_at is not None
    assert any(r.startswith("stepping down: could not renew within 2/3") for r in one.reasons)
    # lb-1 stopped at 2/3 of its lease; lb-2 led only after the lease ran out.
    assert stepped_down_at <= 2 * TTL / 3 + 0.01
    assert took_over_at >= TTL


# -- switchover ----------------------------------------------------------------------------


def test_a_leader_named_by_a_switchover_steps_down_at_once() -> None:
    decision = decide(leader_view(now=0.1, handover=Handover("lb-1", "lb-2")))
    assert decision.action is Action.STEP_DOWN and decision.role is Role.FOLLOWER
    assert decision.reason == "stepping down: switchover requested, handing the lead to lb-2"
    decision = decide(leader_view(now=0.1, handover=Handover("lb-3", "lb-1")))
    assert decision.action is Action.HOLD  # a request about another leader: stale


def test_during_a_switchover_only_the_successor_takes_the_lead() -> None:
    handover = Handover("lb-9", "lb-2")
    me_old = decide(follower_view(me="lb-9", handover=handover))
    assert me_old.action is Action.WAIT
    assert me_old.reason == "not taking the lead back: I handed it over (switchover to lb-2)"
    other = decide(follower_view(handover=handover))
    assert other.action is Action.WAIT
    assert other.reason == "not taking the lead: switchover from lb-9 to lb-2 in progress"
    successor = decide(follower_view(me="lb-2", handover=handover))
    assert successor.action is Action.ACQUIRE
    anyone = decide(follower_view(handover=Handover("lb-9")))
    assert anyone.action is Action.ACQUIRE
    old_to_anyone = decide(follower_view(me="lb-9", handover=Handover("lb-9")))
    assert old_to_anyone.reason.endswith("(switchover to another node)")


# -- failback (preempt) --------------------------------------------------------------------


LB2 = Holder("lb-2", 7)


def back(priority: int = 200, leader_priority: int | None = 100,
         ready_since: float | None = 0.0, returned_under: Holder | None = LB2) -> Failback:
    return Failback(priority, leader_priority, ready_since, returned_under, settle=TTL)


def test_a_node_of_higher_priority_with_preempt_asks_for_the_lead_back() -> None:
    decision = decide(follower_view(now=5.0, holder=LB2, failback=back()))
    assert decision == Decision(
        Action.PREEMPT,
        "taking the lead back: I am lb-1 (priority 200, preempt on, back and ready for 5.0s); "
        "lb-2 leads with priority 100: asking it to hand over",
        Role.FOLLOWER, pytest.approx(5.0 + TTL / 3),
    )


@pytest.mark.parametrize(("failback", "why"), [
    (None, "preempt off: the default, stay"),
    (back(priority=100), "the same priority"),
    (back(priority=50), "a lower priority"),
    (back(leader_priority=None), "the leader's priority not known yet"),
    (back(ready_since=None), "not ready"),
    (back(ready_since=4.0), "ready for less than a lease"),
    (back(returned_under=Holder("lb-2", 6)), "lb-2 took the lead again while I was ready"),
    (back(returned_under=None), "nobody led when I returned: lb-2 won the free lead"),
])
def test_a_follower_does_not_preempt_unless_it_outranks_a_leader_and_is_settled(
    failback: Failback | None, why: str,
) -> None:
    decision = decide(follower_view(now=5.0, holder=LB2, failback=failback))
    assert decision.action is Action.FOLLOW, why


def test_no_preempting_while_a_switchover_is_under_way_or_when_nobody_leads() -> None:
    during = decide(follower_view(now=5.0, holder=LB2, failback=back(),
                                  handover=Handover("lb-2", "lb-1")))
    assert during.action is Action.FOLLOW
    free = decide(follower_view(now=5.0, failback=back()))
    assert free.action is Action.ACQUIRE  # a free lead is taken, not preempted
    leading = decide(leader_view(now=0.1, failback=back()))
    assert leading.action is Action.HOLD
