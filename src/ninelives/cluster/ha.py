"""The HA loop: the thin async shell around :func:`ninelives.cluster.election.decide`.

Each turn reads a snapshot (who the leader key names, this node's lease, the time), asks
``decide`` what to do, does that one thing (acquire, promote, renew, step down, release),
makes the virtual IP follow the role (:mod:`ninelives.cluster.vip`), keeps this node's
member record alive, and sleeps until the decision's ``check_by``, or until the leader key
changes (a watch wakes the loop: a follower sees a released or expired lease within one
poll of the coordinator, 50 ms for ``local``, instead of a third of a lease later).
With etcd every renewal writes the leader key again, so the watch also wakes followers on
each renewal; a follower notes when it first read each version and, when the holder renewed
nothing for a lease (and a twentieth), revokes its lease instead of waiting for etcd's
500 ms sweep (the rule and why it is safe: :mod:`ninelives.cluster.election`).

Every role change is published on the node's event log (``node NAME: follower ->
leader``, with the decision's reason), so it is logged, shown by ``GET /v1/events`` and
kept by the uptime store; the member record carries the role, the reason and since when.

Stopping (the node's shutdown) steps down first: the VIP is removed, then the lease is
released, so a follower watching the key takes the lead at once rather than after the
lease. A node killed outright releases nothing; its lease runs out.

A switchover (``POST /v1/switchover``, :meth:`HaLoop.switchover`, on any node) writes a
lease-bound ``switchover`` key naming the leader and, if asked, its successor; every node
watches it and hands it to ``decide``: the leader steps down (VIP removed, lease
released), the successor takes the key, the others wait. The key lapses after one lease,
so a successor that died meanwhile holds nobody up for longer.

In ``active-active`` mode there is no election: the loop keeps the member record (role
``active``), which carries this node's view of its servers' health (``view``), and
watches the member list, handing every new read of it to ``on_members`` (see
:mod:`ninelives.cluster.sharing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ninelives.cluster.connect import open_coordinator
from ninelives.cluster.coordinator import (
    MEMBERS_PREFIX,
    Coordinator,
    CoordinatorError,
    Entry,
    Lease,
    LeaseLost,
    Member,
    Phase,
    VisibleRenewals,
    bounded,
)
from ninelives.cluster.election import (
    Action,
    Decision,
    Failback,
    Handover,
    Holder,
    Renewal,
    Role,
    Timing,
    View,
    decide,
)
from ninelives.cluster.vip import Vip, VipError, address_lifetime
from ninelives.config import ClusterConfig
from ninelives.config.cluster import DEFAULT_PRIORITY
from ninelives.events import EventLog

log = logging.getLogger("ninelives.cluster.ha")

LEADER_KEY = "leader"
SWITCHOVER_KEY = "switchover"
T = TypeVar("T")
# What ready() answers: None when the node can take the lead, else why it cannot.
Readiness = Callable[[], str | None]
# Active-active: this node's view (per pool, the servers it sees down), and what to do
# with each new read of the member list.
HealthView = Callable[[], Mapping[str, tuple[str, ...]]]
MembersSeen = Callable[[list[Member]], None]


class SwitchoverError(Exception):
    """A switchover was refused or did not complete; ``status`` is the HTTP status to
    answer (404: no such node, 409: not now, 503: the coordinator, 504: too slow)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_handover(value: str | None) -> Handover | None:
    """The ``switchover`` key's value; None when absent or not understood."""
    if value is None:
        return None
    try:
        data = json.loads(value)
        leader, to = data["leader"], data.get("to", "")
    except (ValueError, KeyError, TypeError):
        log.warning("cluster: switchover request not understood: %r", value[:80])
        return None
    if not isinstance(leader, str) or not isinstance(to, str):
        return None
    return Handover(leader, to)


class HaLoop:
    """One node's part in the cluster: its member record, and the lead when it has it."""

    def __init__(
        self,
        coordinator: Coordinator,
        me: str,
        address: str,
        events: EventLog,
        ready: Readiness,
        mode: str = "active-passive",
        vip: Vip | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        view: HealthView | None = None,
        on_members: MembersSeen | None = None,
        priority: int = DEFAULT_PRIORITY,
        preempt: bool = False,
    ) -> None:
        self.coordinator = coordinator
        self.me = me
        self.address = address
        self.events = events
        self.ready = ready
        self.mode = mode
        self.vip = vip
        self.priority = priority
        self.preempt = preempt  # take the lead back from a leader of lower priority
        self.clock = clock
        self.wall = wall
        self.view = view
        self.on_members = on_members
        self.timing = Timing(coordinator.ttl)
        self.role = Role.FOLLOWER
        self.since = wall()  # when this node took its current role
        self.change_reason = "started as a follower"
        self.decision: Decision | None = None
        self.members: list[Member] = []
        self.error = ""  # the last coordinator or VIP error, "" once things work again
        self._holder: Holder | None = None
        self._followed: Holder | None = None  # the holder named in change_reason
        self._changed_role = False
        self._handover: Handover | None = None  # a switchover in progress
        self._lease: Lease | None = None
        self._member_lease: Lease | None = None
        self._renew_failed_at: float | None = None
        self._renew_error = ""
        self._lost_because = ""
        self._vip_renewal_due = False  # the lease was renewed: renew the VIP's lifetime too
        self._ready_since: float | None = None  # ready without a break since (None: not ready)
        self._returned_under: Holder | None = None  # the leader when this node became ready
        self._preempting: Lease | None = None  # the switchover key this node wrote to preempt
        self._entry: Entry | None = None  # the leader key as a follower last read it
        self._renewal: Renewal | None = None  # when that version was first read
        self._holder_ttl: tuple[int, float] = (0, 0.0)  # a lease id and its granted TTL
        self._wake = asyncio.Event()  # the leader key changed, or the node stops
        self._member_changed = asyncio.Event()  # the record must be written again
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Make the VIP follow the role (a follower removes one left on its interface),
        register this node, then run the loop in a task."""
        await self._apply_vip("I start as a follower and hold no leader lease")
        await self._keep_member()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._membership()))
        if self.mode == "active-passive":
            self._tasks += [loop.create_task(self._run()),
                            loop.create_task(self._watch(LEADER_KEY)),
                            loop.create_task(self._watch(SWITCHOVER_KEY))]
        else:  # a peer's new view is read at once, not at the next renewal
            self._tasks.append(loop.create_task(self._watch(MEMBERS_PREFIX,
                                                            self._member_changed)))

    async def stop(self) -> None:
        """Step down (VIP removed, lease released), leave the member list, stop the loop."""
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.role is Role.LEADER:
            self._set_role(Role.FOLLOWER, "stepping down: the node is stopping; the lead is "
                                          "released so that a follower takes it at once")
        await self._apply_vip("the node is stopping")
        if self.vip is not None:
            await self.vip.close()
        for lease in (self._lease, self._member_lease):
            if lease is not None:
                with contextlib.suppress(CoordinatorError):
                    await self._call("release", self.coordinator.release(lease))
        self._lease = self._member_lease = None
        await self.coordinator.close()

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        """The election: nothing else runs in this task, so nothing can delay a step-down."""
        while not self._stopping:
            try:
                next_at = await self._turn()
            except CoordinatorError as exc:
                self._failed(str(exc))
                next_at = self.clock() + self._retry_every()
            except Exception:  # a bug here must not leave a leader that never steps down
                log.exception("cluster: the HA loop failed; going on")
                next_at = self.clock() + self._retry_every()
            await self._sleep_until(self._wake, next_at)

    async def _turn(self) -> float:
        """Read, decide, act; return when to decide again."""
        if self._lease is None and self.role is Role.FOLLOWER:
            self._holder = Holder.of(await self._read_leader())
            if self._holder is None:  # about to take the lead: is it promised to another?
                await self._read_handover()
        now = self.clock()
        not_ready = self.ready()
        if not_ready is not None:
            self._ready_since = None
        elif self._ready_since is None:
            self._ready_since, self._returned_under = now, self._holder
        decision = decide(View(
            me=self.me, now=now, role=self.role, holder=self._holder, lease=self._lease,
            timing=self.timing, ready=not_ready is None, not_ready_because=not_ready or "",
            renew_failed_at=self._renew_failed_at, renew_error=self._renew_error,
            lost_because=self._lost_because, handover=self._handover,
            failback=self._failback(),
            renewal=self._renewal,
        ))
        if self.decision is None or decision.action is not self.decision.action:
            log.debug("cluster: %s", decision.reason)
        self.decision = decision
        if (decision.action in (Action.FOLLOW, Action.WAIT) and self._holder != self._followed
                and not self._changed_role):
            # A node that has only ever followed says whom; one that stepped down keeps
            # the reason it did (the decision, in the status, says whom it follows now).
            self._followed, self.change_reason = self._holder, decision.reason
            self._member_changed.set()
        next_at = await self._act(decision)
        await self._apply_vip(decision.reason)
        return next_at

    def _failback(self) -> Failback | None:
        if not self.preempt:
            return None
        holder = self._holder
        leader = next((m for m in self.members if holder is not None and m.name == holder.name),
                      None)
        return Failback(self.priority, leader.priority if leader is not None else None,
                        self._ready_since, self._returned_under, settle=self.timing.ttl)

    async def _act(self, decision: Decision) -> float:
        action, now = decision.action, self.clock()
        if action is Action.ACQUIRE:
            try:
                lease = await self._call("acquire", self.coordinator.acquire(LEADER_KEY, self.me),
                                         timeout=self.timing.renew_at * self.timing.ttl)
            except CoordinatorError as exc:
                self._failed(f"could not ask for the lead: {exc}")
                return now + self._retry_every()
            if lease is not None:
                self._lease, self._holder = lease, Holder(self.me, lease.token)
                self._lost_because = self._renew_error = ""
                self._renew_failed_at = None
            else:
                self._holder = Holder.of(await self._read_leader())
            return self.clock()
        if action is Action.PROMOTE:
            self._set_role(Role.LEADER, decision.reason)
            request, self._preempting = self._preempting, None
            if request is not None:
                await self._handed_over(request)
        elif action is Action.RENEW and self._lease is not None:
            await self._renew(self._lease, decision.check_by)
            return self.clock()
        elif action is Action.STEP_DOWN:
            self._set_role(Role.FOLLOWER, decision.reason)
            await self._apply_vip(decision.reason)  # first: nothing may serve past this point
            await self._give_back()
        elif action is Action.RELEASE:
            await self._give_back()
        elif action is Action.PREEMPT and self._holder is not None:
            log.info("cluster: %s", decision.reason)
            try:
                self._preempting = await self._request_handover(self._holder.name, self.me)
            except CoordinatorError as exc:
                self._failed(f"could not ask for the lead back: {exc}")
        elif action is Action.REVOKE:
            await self._revoke_unrenewed()
            return self.clock()
        return decision.check_by

    async def _read_leader(self) -> Entry | None:
        """Read the leader key; where renewals write it again, note when this node first
        read its version, and the TTL of the holder's lease (asked once per lease)."""
        entry = await self._call("get", self.coordinator.get(LEADER_KEY))
        seen_at = self.clock()  # after the read: never before the write it saw
        self._entry = entry
        if (entry is None or not entry.lease_id
                or not isinstance(self.coordinator, VisibleRenewals)):
            self._renewal = None
            return entry
        if self._renewal is not None and self._renewal.version == entry.version:
            return entry
        self._renewal = None
        if self._holder_ttl[0] != entry.lease_id:
            ttl = await self._call("granted_ttl", self.coordinator.granted_ttl(entry))
            if ttl is None:  # the lease is gone, and its key with it
                return entry
            self._holder_ttl = (entry.lease_id, ttl)
        self._renewal = Renewal(entry.version, seen_at, self._holder_ttl[1])
        return entry

    async def _read_handover(self) -> None:
        entry = await self._call("get", self.coordinator.get(SWITCHOVER_KEY))
        self._handover = parse_handover(entry.value if entry is not None else None)

    async def _revoke_unrenewed(self) -> None:
        entry = self._entry
        if entry is None or not isinstance(self.coordinator, VisibleRenewals):
            return
        if await self._call("revoke", self.coordinator.revoke_unrenewed(entry)):
            log.info("cluster: revoked the lease of %s (token %d): it renewed nothing for "
                     "a lease", entry.value, entry.token)
        self._renewal = None

    async def _renew(self, lease: Lease, by: float) -> None:
        try:
            self._lease = await self._call("renew", self.coordinator.renew(lease),
                                           timeout=max(0.0, by - self.clock()))
            self._renew_failed_at, self._renew_error = None, ""
            self._vip_renewal_due = True
            self.error = ""
        except LeaseLost as exc:
            self._lease, self._lost_because = None, str(exc)
        except CoordinatorError as exc:
            self._renew_failed_at, self._renew_error = self.clock(), str(exc)
            self._failed(f"could not renew the lead: {exc}")

    async def _give_back(self) -> None:
        lease, self._lease = self._lease, None
        self._holder = None
        if lease is not None:
            try:
                await self._call("release", self.coordinator.release(lease))
            except CoordinatorError as exc:  # it expires by itself
                self._failed(f"could not release the lead (it will expire): {exc}")

    def _set_role(self, role: Role, reason: str) -> None:
        if role is self.role:
            return
        old, self.role = self.role, role
        self._changed_role = True
        self.since, self.change_reason = self.wall(), reason
        self.events.publish("node", self.me, old.value, role.value, reason)
        self._member_changed.set()

    async def _apply_vip(self, why: str) -> None:
        if self.vip is None:
            return
        if self._lease is not None:  # etcd may grant a longer lease than asked
            self.vip.lifetime = address_lifetime(self._lease.ttl)
        try:
            await self.vip.apply(self.role is Role.LEADER, why, self._vip_renewal_due)
            self._vip_renewal_due = False
        except VipError as exc:
            self.vip.error = str(exc)
            self._failed(f"virtual IP: {exc}")

    # -- membership ------------------------------------------------------------------------

    def member(self) -> Member:
        not_ready = self.ready()
        role = "active" if self.mode == "active-active" else self.role.value
        return Member(self.me, self.address, role,  # type: ignore[arg-type]
                      "healthy" if not_ready is None else "unhealthy",
                      self.change_reason if not_ready is None else not_ready, self.since,
                      dict(self.view()) if self.view is not None else {}, self.priority)

    def touch(self) -> None:
        """Something in this node's record may have changed (its view): write it again."""
        self._member_changed.set()

    async def _membership(self) -> None:
        """Keep the member record and read the others', in a task of its own."""
        while not self._stopping:
            try:
                await self._keep_member()
                self.members = await self._call("members", self.coordinator.members())
                if self.on_members is not None:
                    self.on_members(self.members)
            except CoordinatorError as exc:
                self._failed(f"member list: {exc}")
            next_at = self.clock() + self.timing.renew_at * self.timing.ttl
            if self._member_lease is not None:
                next_at = min(next_at, self._renew_due(self._member_lease))
            await self._sleep_until(self._member_changed, next_at)

    async def _keep_member(self) -> None:
        """Register, re-register after a change of role or health, renew by a third."""
        member, lease = self.member(), self._member_lease
        if lease is not None and lease.value == member.to_json():
            if self.clock() >= self._renew_due(lease):
                try:
                    self._member_lease = await self._call(
                        "renew", self.coordinator.renew(lease))
                except LeaseLost:
                    self._member_lease = None
                    self._member_lease = await self._call(
                        "register", self.coordinator.register(member))
            return
        try:
            self._member_lease = await self._call(
                "register", self.coordinator.register(member, lease))
        except LeaseLost:
            self._member_lease = await self._call("register", self.coordinator.register(member))

    def _renew_due(self, lease: Lease) -> float:
        return lease.renewed_at + self.timing.renew_at * lease.ttl

    # -- waiting ---------------------------------------------------------------------------

    async def _watch(self, key: str, wake: asyncio.Event | None = None) -> None:
        """Wake the loop (or set ``wake``) on every change of ``key``; start again after a
        failure. The switchover key's value is kept from the changes, so the leader never
        waits for a read of it."""
        wake = self._wake if wake is None else wake
        while not self._stopping:
            try:
                async with self.coordinator.watch(key) as changes:
                    if key == SWITCHOVER_KEY:
                        await self._read_handover()
                        wake.set()
                    async for change in changes:
                        if change.key == SWITCHOVER_KEY:
                            self._handover = parse_handover(change.value)
                        wake.set()
            except CoordinatorError as exc:
                log.warning("cluster: watching %s failed (%s); watching again", key, exc)
            await asyncio.sleep(self._retry_every())

    # -- switchover ------------------------------------------------------------------------

    async def switchover(self, to: str | None) -> dict[str, Any]:
        """Hand the lead from the current leader to ``to`` (None: any other ready node) and
        wait until another node holds it; raise SwitchoverError if refused or too slow."""
        if self.mode != "active-passive":
            raise SwitchoverError(409, "active-active: every node serves, nobody leads")
        try:
            entry = await self._call("get", self.coordinator.get(LEADER_KEY))
            members = await self._call("members", self.coordinator.members())
        except CoordinatorError as exc:
            raise SwitchoverError(503, f"the coordinator: {exc}") from None
        if entry is None:
            raise SwitchoverError(409, "nobody leads: there is nothing to hand over")
        leader = entry.value
        others = [m for m in members if m.name != leader]
        if to is not None:
            target = next((m for m in members if m.name == to), None)
            if target is None:
                known = ", ".join(m.name for m in members) or "none"
                raise SwitchoverError(404, f"no node named {to} in the cluster (nodes: {known})")
            if to == leader:
                raise SwitchoverError(409, f"{to} already leads")
            if target.health != "healthy":
                raise SwitchoverError(409, f"{to} is not ready: {target.reason}")
        elif not any(m.health == "healthy" for m in others):
            raise SwitchoverError(409, f"no other ready node to hand the lead over to "
                                       f"(nodes: {', '.join(m.name for m in members)})")
        started = self.clock()
        try:
            request = await self._request_handover(leader, to)
        except CoordinatorError as exc:
            raise SwitchoverError(503, f"the coordinator: {exc}") from None
        if request is None:
            raise SwitchoverError(409, "a switchover is already in progress")
        deadline = started + 3 * self.timing.ttl
        while self.clock() < deadline:
            await asyncio.sleep(self._retry_every())
            with contextlib.suppress(CoordinatorError):
                now = await self._call("get", self.coordinator.get(LEADER_KEY))
                if now is not None and now.value != leader:
                    took = self.clock() - started
                    await self._handed_over(request)
                    return {"from": leader, "to": now.value, "token": now.token,
                            "took_s": round(took, 3)}
        raise SwitchoverError(504, f"no other node took the lead within "
                                   f"{deadline - started:.1f}s; the request lapses by itself")

    async def _request_handover(self, leader: str, to: str | None) -> Lease | None:
        """Write the switchover key: ``leader`` hands the lead to ``to`` (None: any other
        node). None if another switchover holds the key."""
        request = json.dumps({"leader": leader, "to": to or ""})
        lease = await self._call("acquire", self.coordinator.acquire(SWITCHOVER_KEY, request))
        if lease is None:
            return None
        self._handover = parse_handover(request)
        self._wake.set()
        log.info("cluster: switchover requested: %s hands the lead to %s", leader,
                 to or "another node")
        return lease

    async def _handed_over(self, request: Lease) -> None:
        """Another node leads now: delete the switchover key, so that the next switchover
        need not wait for it to lapse (if this fails, it lapses after its lease)."""
        with contextlib.suppress(CoordinatorError):
            await self._call("release", self.coordinator.release(request))

    async def _sleep_until(self, wake: asyncio.Event, at: float) -> None:
        delay = at - self.clock()
        if delay > 0 and not wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)
        wake.clear()

    async def _call(self, phase: Phase, work: Awaitable[T], timeout: float | None = None) -> T:
        """A coordinator call bounded by ``timeout`` (default: a third of the lease)."""
        limit = self.timing.renew_at * self.timing.ttl if timeout is None else timeout
        return await bounded(phase, work, limit)

    def _retry_every(self) -> float:
        return self.timing.retry_every * self.timing.ttl

    def _failed(self, message: str) -> None:
        if message != self.error:
            log.warning("cluster: %s", message)
        self.error = message

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For ``GET /v1/status``: the nodes, their roles, who leads and since when, why."""
        leader = next((m for m in self.members if m.role == "leader"), None)
        return {
            "mode": self.mode,
            "me": self.me,
            "role": "active" if self.mode == "active-active" else self.role.value,
            "since": self.since,
            "reason": self.change_reason,
            "decision": self.decision.reason if self.decision is not None else "",
            "leader": None if leader is None else {
                "name": leader.name, "since": leader.since, "reason": leader.reason,
                "token": self._holder.token if self._holder is not None else None,
            },
            "members": [
                {"name": m.name, "address": m.address, "role": m.role, "health": m.health,
                 "since": m.since, "reason": m.reason, "priority": m.priority}
                for m in self.members
            ],
            "priority": self.priority,
            "preempt": self.preempt,
            "switchover": None if self._handover is None else {
                "leader": self._handover.leader, "to": self._handover.to},
            "error": self.error,
            "vip": self.vip.status() if self.vip is not None else None,
        }


async def start_cluster(
    config: ClusterConfig, me: str, address: str, events: EventLog, ready: Readiness,
    view: HealthView | None = None, on_members: MembersSeen | None = None,
) -> HaLoop:
    """Open the coordinator, start this node's HA loop; raise CoordinatorError if the
    coordinator cannot be opened."""
    coordinator = await open_coordinator(config)
    vip = (Vip(config.vip, address_lifetime(config.lease_ttl))
           if config.vip is not None else None)
    loop = HaLoop(coordinator, me, address, events, ready, config.mode, vip,
                  view=view, on_members=on_members,
                  priority=config.priority, preempt=config.preempt)
    try:
        await loop.start()
    except BaseException:
        await coordinator.close()
        raise
    return loop
