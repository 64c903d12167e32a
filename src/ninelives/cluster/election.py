"""Leader election: one pure decision over a snapshot, returning an action and why.

The loop around it (Patroni's HA loop) reads a snapshot (who holds the leader key, the
lease this node holds, the time), calls :func:`decide`, does the one thing decided, and
calls again by ``Decision.check_by`` at the latest. Nothing here does I/O or reads a
clock, so every case is a unit test with made-up times.

Timing, for a lease of ``ttl`` seconds whose last renewal was *sent* at ``r``:

- the leader renews from ``r + ttl/3`` on (etcd's clients renew at a third too), and
  retries every ``ttl/20`` after a failure;
- if no renewal succeeded by ``r + 2*ttl/3``, it steps down: it stops acting as leader
  while a third of the lease is left, a margin for a paused process, a slow step-down
  and clocks that drift. The store cannot expire the lease before ``r + ttl`` (the
  request was sent at ``r``), and no other node can take the key before that, so two
  nodes never lead at once;
- a renewal call must be abandoned at ``r + 2*ttl/3`` (``check_by`` says so), whatever
  it is waiting for.

A node becomes leader in two steps: ``ACQUIRE`` (the shell asks the store for the key),
then ``PROMOTE`` once the lease is in hand (the shell starts acting: later, the virtual
IP). A lease granted too late to act on (the shell was slow to get back to it) is
given back (``RELEASE``) rather than acted on. A lease from an earlier run of this node
(it crashed and restarted within a lease) is left to expire rather than adopted: the old
process may still be stepping down.

A holder that died is noticed sooner where every renewal writes the leader key again (etcd;
:class:`~ninelives.cluster.coordinator.VisibleRenewals`): each successful renewal gives the
key a new version. A follower notes the version it reads and the instant ``s`` (its own
clock) it *first* read it (:class:`Renewal`). If the version has not changed by
``s + ttl*(1 + clock_margin)``, ``ttl`` being the larger of the holder's lease TTL and its
own, the follower revokes (``REVOKE``): the shell deletes the key only if it is still at that
version, ends its lease, and the follower acquires as usual. It does not wait for etcd's
lessor, which looks for expired leases every 500 ms, so a takeover takes ``ttl`` and a
twentieth rather than up to ``ttl + 0.5 s``. Why this never gives two leaders:

- the holder acts only on a renewal that succeeded, and a renewal succeeds only when its
  write does. That write came after the renewal was sent at ``r``, and the follower read
  it later still, so ``r < s``: the holder stops acting by ``r + 2*ttl/3 < s + 2*ttl/3``
  by its own clock, a third of a lease (plus the margin) before the follower revokes;
- the delete is conditioned on the version, so it is atomic against a renewal: a renewal
  whose write landed after the follower's last read makes the delete fail (nothing is
  revoked, the follower reads again), and one whose write comes after the delete fails
  (the key is gone), so the holder never acts on it, however late its answer comes;
- a follower whose watch started mid-term, or that was cut off from the store for a
  while, first reads a version late: ``s`` is later, never earlier, than the write;
- a renewal whose keepalive succeeded but whose write failed extends etcd's lease without
  a new version; the holder does not count it (its renewal failed), so it steps down by
  the rule above, and the follower may end that lease before etcd would;
- a follower cut off from the store reads nothing and revokes nothing; its delete, if it
  reaches the store late, still fails if the holder renewed meanwhile;
- without visible renewals (``local``, whose expired leases are gone at their time) there
  is no :class:`Renewal` and followers wait for the store as before.

A switchover (a planned handover, :class:`Handover`) makes the leader it names step down;
while it stands, that node does not take the lead back and, when it names a successor, no
other node takes it either. It is a lease-bound key, so a successor that never comes
does not stop the others for longer than a lease.

Failback (:class:`Failback`, ``cluster.preempt``): a follower with ``preempt`` on that
*returns* (starts, or becomes ready again) while a node of lower priority leads asks for the
lead back (``PREEMPT``): it requests a switchover to itself, so the lead moves by the same
handover as ``ninelives switchover`` (the leader steps down and releases at once; only this
node takes it). It waits until it has been ready for ``settle`` seconds, so a node that
flaps does not drag the lead along, and never asks while a switchover is under way. Only
the leader it found on its return is preempted: a lead taken while this node was ready (a
switchover an operator asked for, a race for a free lead) is left alone. Without
``preempt`` (the default), a leader keeps the lead until it fails or is asked to hand it
over.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ninelives.cluster.coordinator import Entry, Lease


class Role(Enum):
    FOLLOWER = "follower"
    LEADER = "leader"


class Action(Enum):
    ACQUIRE = "acquire"      # ask the store for the leader key
    PROMOTE = "promote"      # the key is ours: start acting as leader
    RENEW = "renew"          # extend the lease, finishing by check_by
    HOLD = "hold"            # leader, nothing to do until check_by
    STEP_DOWN = "step-down"  # stop acting as leader now, then release the lease if held
    FOLLOW = "follow"        # another node leads
    PREEMPT = "preempt"      # another node leads: ask it to hand the lead over to me
    WAIT = "wait"            # nobody to follow, and not taking the lead (yet)
    RELEASE = "release"      # give back a lease that came too late to act on
    REVOKE = "revoke"        # end the lease of a holder that renewed nothing for a lease


# What each action does to the role; a pair not listed is a bug in decide().
TRANSITIONS: dict[tuple[Role, Action], Role] = {
    (Role.FOLLOWER, Action.ACQUIRE): Role.FOLLOWER,
    (Role.FOLLOWER, Action.PROMOTE): Role.LEADER,
    (Role.FOLLOWER, Action.RELEASE): Role.FOLLOWER,
    (Role.FOLLOWER, Action.FOLLOW): Role.FOLLOWER,
    (Role.FOLLOWER, Action.PREEMPT): Role.FOLLOWER,
    (Role.FOLLOWER, Action.WAIT): Role.FOLLOWER,
    (Role.FOLLOWER, Action.REVOKE): Role.FOLLOWER,
    (Role.LEADER, Action.RENEW): Role.LEADER,
    (Role.LEADER, Action.HOLD): Role.LEADER,
    (Role.LEADER, Action.STEP_DOWN): Role.FOLLOWER,
}


class ImpossibleTransition(Exception):
    def __init__(self, me: str, role: Role, action: Action) -> None:
        super().__init__(f"{me}: no transition from {role.value} on {action.value}")


def transition(me: str, role: Role, action: Action) -> Role:
    try:
        return TRANSITIONS[(role, action)]
    except KeyError:
        raise ImpossibleTransition(me, role, action) from None


@dataclass(frozen=True, slots=True)
class Timing:
    """Fractions of the lease at which a leader renews and steps down, and its retry pace."""

    ttl: float
    renew_at: float = 1 / 3
    step_down_at: float = 2 / 3
    retry_every: float = 1 / 20
    clock_margin: float = 1 / 20  # a follower revokes a silent holder after a lease and this

    def __post_init__(self) -> None:
        if not 0 < self.renew_at < self.step_down_at < 1:
            raise ValueError("expected 0 < renew_at < step_down_at < 1 (fractions of the lease)")


@dataclass(frozen=True, slots=True)
class Holder:
    """Who the leader key names, and the fencing token of that holder's term."""

    name: str
    token: int

    @classmethod
    def of(cls, entry: Entry | None) -> Holder | None:
        return cls(entry.value, entry.token) if entry is not None else None


@dataclass(frozen=True, slots=True)
class Renewal:
    """The holder's last renewal as a follower saw it, where renewals write the key again:
    the leader key's ``version``, the instant ``seen_at`` (the follower's monotonic clock)
    it first read that version, and the ``ttl`` of the holder's lease."""

    version: int
    seen_at: float
    ttl: float


@dataclass(frozen=True, slots=True)
class Handover:
    """A switchover in progress: ``leader`` hands the lead to ``to`` ("": any other node)."""

    leader: str
    to: str = ""

    @property
    def successor(self) -> str:
        return self.to or "another node"


@dataclass(frozen=True, slots=True)
class Failback:
    """A node with ``preempt`` on: its priority, the leader's (None: its member record is
    not read yet), since when this node is ready without a break (None: not ready), the
    leader it found then (``returned_under``: None if nobody led), and how long it must
    have been ready before it asks for the lead."""

    priority: int
    leader_priority: int | None
    ready_since: float | None
    returned_under: Holder | None
    settle: float


@dataclass(frozen=True, slots=True)
class View:
    """What one node knows when it decides.

    ``holder`` is the leader key as last read (None: nobody holds it). ``lease`` is this
    node's lease on it, as last acquired or renewed (None: it holds none).
    ``renew_failed_at`` and ``renew_error`` tell of the last renewal attempt if it failed.
    """

    me: str
    now: float
    role: Role
    holder: Holder | None
    lease: Lease | None
    timing: Timing
    ready: bool = True
    not_ready_because: str = ""
    renew_failed_at: float | None = None
    renew_error: str = ""
    lost_because: str = ""
    handover: Handover | None = None
    failback: Failback | None = None  # None: preempt is off
    renewal: Renewal | None = None  # None: renewals are not visible, or nothing read yet


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do, why (a sentence for logs, status and tests), and by when to decide again."""

    action: Action
    reason: str
    role: Role  # the role once the action is done
    check_by: float


def decide(view: View) -> Decision:
    if view.role is Role.LEADER:
        action, reason, check_by = _as_leader(view)
    else:
        action, reason, check_by = _as_follower(view)
    return Decision(action, reason, transition(view.me, view.role, action), check_by)


def _as_leader(view: View) -> tuple[Action, str, float]:
    me, now, lease, timing = view.me, view.now, view.lease, view.timing
    if lease is None:
        return Action.STEP_DOWN, f"stepping down: lost the leader lease ({view.lost_because})", now
    holder = view.holder
    if holder is None or (holder.name, holder.token) != (me, lease.token):
        named = "is gone" if holder is None else f"names {holder.name} (token {holder.token})"
        return (Action.STEP_DOWN,
                f"stepping down: the leader key {named}, not me (token {lease.token})", now)
    step_down = lease.renewed_at + timing.step_down_at * lease.ttl
    if now >= step_down:
        why = f"; last error: {view.renew_error}" if view.renew_error else ""
        return (
            Action.STEP_DOWN,
            f"stepping down: could not renew within {_fraction(timing.step_down_at)} of the "
            f"lease (renewed {now - lease.renewed_at:.2f}s ago, "
            f"{lease.deadline - now:.2f}s before it can expire{why})",
            now,
        )
    if view.handover is not None and view.handover.leader == me:
        return (Action.STEP_DOWN,
                f"stepping down: switchover requested, handing the lead to "
                f"{view.handover.successor}", now)
    renew = lease.renewed_at + timing.renew_at * lease.ttl
    if now < renew:
        return (Action.HOLD,
                f"no action: I am {me}, the leader with the lease (token {lease.token})", renew)
    failed = view.renew_failed_at
    if failed is not None and failed >= lease.renewed_at:
        retry = failed + timing.retry_every * lease.ttl
        if now < retry:
            return (
                Action.HOLD,
                f"renewal failed ({view.renew_error}); I am {me}, still the leader with the "
                f"lease (token {lease.token}) for {step_down - now:.2f}s unless a retry succeeds",
                min(retry, step_down),
            )
    return (
        Action.RENEW,
        f"renewing: I am {me}, the leader with the lease (token {lease.token}, "
        f"{lease.deadline - now:.2f}s left)",
        step_down,
    )


def _as_follower(view: View) -> tuple[Action, str, float]:
    me, now, lease, holder, timing = view.me, view.now, view.lease, view.holder, view.timing
    poll = now + timing.renew_at * timing.ttl
    if lease is not None:
        step_down = lease.renewed_at + timing.step_down_at * lease.ttl
        if now < step_down:
            return (Action.PROMOTE,
                    f"taking the lead: I am {me}, holding the leader lease (token {lease.token})",
                    now)
        return (
            Action.RELEASE,
            f"giving the leader lease back: it was granted {now - lease.renewed_at:.2f}s ago "
            f"(token {lease.token}), too close to its end to act on",
            now,
        )
    handover = view.handover
    if holder is None and handover is not None:
        if handover.leader == me:
            return (Action.WAIT, f"not taking the lead back: I handed it over "
                                 f"(switchover to {handover.successor})", poll)
        if handover.to and handover.to != me:
            return (Action.WAIT, f"not taking the lead: switchover from {handover.leader} "
                                 f"to {handover.to} in progress", poll)
    if holder is None:
        if not view.ready:
            return (Action.WAIT,
                    f"not taking the lead: nobody leads, but I am not ready "
                    f"({view.not_ready_because})", poll)
        return Action.ACQUIRE, "trying to take the lead: no node holds the leader lease", now
    renewal = view.renewal
    if renewal is not None and view.ready:
        ttl = max(renewal.ttl, timing.ttl)
        silent_until = renewal.seen_at + ttl * (1 + timing.clock_margin)
        if now >= silent_until:
            return (Action.REVOKE,
                    f"revoking the lease of {holder.name} (token {holder.token}): it renewed "
                    f"nothing for {now - renewal.seen_at:.2f}s, more than its {ttl:g}s lease",
                    now)
        poll = min(poll, silent_until)
    if holder.name == me:
        return (
            Action.WAIT,
            f"waiting: the leader lease names me but is from an earlier run "
            f"(token {holder.token}); it will expire",
            poll,
        )
    claim = _failback(view, holder)
    if claim is not None:
        return Action.PREEMPT, claim, poll
    return (Action.FOLLOW,
            f"no action: following {holder.name}, the leader with the lease "
            f"(token {holder.token})", poll)


def _failback(view: View, holder: Holder) -> str | None:
    """Why this follower asks ``holder`` for the lead back; None if it does not."""
    failback = view.failback
    if (failback is None or view.handover is not None or failback.leader_priority is None
            or failback.priority <= failback.leader_priority or failback.ready_since is None
            or view.now - failback.ready_since < failback.settle
            or failback.returned_under != holder):
        return None
    return (f"taking the lead back: I am {view.me} (priority {failback.priority}, preempt "
            f"on, back and ready for {view.now - failback.ready_since:.1f}s); {holder.name} "
            f"leads with priority {failback.leader_priority}: asking it to hand over")


def _fraction(value: float) -> str:
    for n, d in ((1, 3), (2, 3), (1, 2), (3, 4), (1, 4)):
        if abs(value - n / d) < 1e-9:
            return f"{n}/{d}"
    return f"{value:.0%}"
