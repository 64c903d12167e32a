"""Active/passive in network namespaces: the virtual IP moves when the leader dies.

Topology (every namespace and link made here is removed at the end, also on failure):

    bridge namespace (br0) --- lb-1 (10.77.0.11, eth0)      ninelives run, HA loop
                           --- lb-2 (10.77.0.12, eth0)      ninelives run, HA loop
                           --- backend (10.77.0.20:8000)
                           --- client (10.77.0.30)          probes http://10.77.0.100:8080/

The two nodes share the ``local`` coordinator (one SQLite file: namespaces share the file
system and the monotonic clock) with ``lease_ttl: 1s``; the VIP is 10.77.0.100/24 on each
node's eth0. Node loss = the leader's process killed (SIGKILL) and its link set down.
A thread looks at both nodes' interfaces the whole time: never may both hold the VIP on a
link that is up.
"""

from __future__ import annotations

import itertools
import statistics
import time

from ninelives.cluster.vip import address_lifetime
from tests.support.netlab import (
    Cluster,
    Lab,
    SplitBrainWatch,
    answers,
    local_coordinator,
    needs_netns,
    other,
    outcomes,
    restored_after,
    start_backend,
    start_probe,
    wait_for_answers,
)
from tests.support.node import Harness, wait_until

pytestmark = needs_netns

LEASE_TTL = 1.0
MUST_RESTORE_WITHIN = 1.5  # seconds: issue 4's must for `local` with a 1 s lease
BUSY_MACHINE_LIMIT = 3.0  # no single trial may exceed this, even on a loaded machine
TRIALS = 3
KERNEL_EXPIRY_SLACK = 1.5  # seconds past an address's lifetime before the kernel removes it




def local_cluster(lab: Lab, harness: Harness) -> Cluster:
    """The nodes on the ``local`` coordinator, and the backend they serve (started)."""
    start_backend(lab, harness)
    return Cluster(lab, harness, local_coordinator(harness.directory / "cluster.db", LEASE_TTL))


def test_the_vip_moves_to_the_follower_when_the_leader_dies_and_never_is_held_twice(
    lab: Lab, harness: Harness,
) -> None:
    cluster = local_cluster(lab, harness)
    watch = SplitBrainWatch(lab)
    watch.start()
    try:
        leader = cluster.start_all()
        probe = start_probe(lab, harness)
        wait_for_answers(probe)
        gaps: list[float] = []
        for trial in range(TRIALS):
            follower = other(leader)
            status = cluster.status(follower)
            assert status["role"] == "follower", status
            assert status["leader"]["name"] == leader, status
            # (a) node loss: the leader's process killed, its link set down.
            killed_at = time.monotonic()
            cluster.nodes[leader].kill()
            lab.set_link(leader, "down")
            wait_until(lambda f=follower: cluster.holder() == f, timeout=10,
                       message=f"trial {trial}: the VIP moves to {follower}")
            wait_until(lambda k=killed_at: restored_after(probe, k) is not None, timeout=10,
                       message=f"trial {trial}: the client gets answers again")
            restored = restored_after(probe, killed_at)
            assert restored is not None
            gaps.append(restored)
            status = cluster.status(follower)
            assert status["role"] == "leader", status
            assert status["reason"].startswith("taking the lead: I am " + follower), status
            # (b) the crashed node, restarted, removes the VIP it left and does not claim it.
            cluster.start(leader)  # its link still down: a stale VIP there reaches nobody
            assert not lab.has_vip_address(leader), f"{leader} kept the VIP it left"
            lab.set_link(leader, "up")
            cluster.rejoins_as_follower(leader, follower, hold=3 * LEASE_TTL)
            leader = follower
        # (d) a planned switchover, asked of the follower: the VIP moves back.
        follower = other(leader)
        asked_at = time.monotonic()
        done = cluster.ninelives(follower, "switchover", "--to", follower)
        assert done.returncode == 0, done
        assert done.stdout.startswith(f"{leader} -> {follower} in "), done.stdout
        wait_until(lambda: cluster.holder() == follower, timeout=10,
                   message=f"the switchover moves the VIP to {follower}")
        wait_until(lambda: restored_after(probe, time.monotonic() - 0.001) is not None,
                   timeout=10, message="the client gets answers after the switchover")
        times, retried = answers(probe, asked_at, time.monotonic())
        switchover_gap = max(b - a for a, b in itertools.pairwise(times))
        status = cluster.status(leader)
        assert status["role"] == "follower", status
        assert status["reason"] == ("stepping down: switchover requested, handing the lead "
                                    f"to {follower}"), status
        assert status["decision"].startswith(f"no action: following {follower}"), status
    finally:
        watch.stop()
    print(f"\ntakeover gaps (kill -> first answer through the VIP): "
          f"{', '.join(f'{g:.3f}s' for g in gaps)}; median {statistics.median(gaps):.3f}s; "
          f"switchover: {done.stdout.strip()}, longest gap {switchover_gap:.3f}s, "
          f"{retried} attempts retried; "
          f"split-brain samples: {len(watch.both)} of {watch.samples}")
    watch.assert_never_two()
    assert statistics.median(gaps) < MUST_RESTORE_WITHIN, gaps
    assert max(gaps) < BUSY_MACHINE_LIMIT, gaps
    assert switchover_gap < MUST_RESTORE_WITHIN, switchover_gap


def test_a_leader_process_killed_on_a_live_link_leaves_a_vip_the_kernel_removes(
    lab: Lab, harness: Harness,
) -> None:
    """SIGKILL alone, the link up: nobody can remove the dead leader's address, so it is
    added with a lifetime of one lease, renewed with the lease: the kernel removes it."""
    cluster = local_cluster(lab, harness)
    watch = SplitBrainWatch(lab)
    watch.start()
    try:
        leader = cluster.start_all()
        follower = other(leader)
        lifetime = cluster.status(leader)["vip"]["lifetime_s"]
        assert lifetime == address_lifetime(LEASE_TTL)
        probe = start_probe(lab, harness)
        wait_for_answers(probe)
        killed_at = time.monotonic()
        cluster.nodes[leader].kill()
        wait_until(lambda: lab.holds_vip(follower), timeout=10,
                   message=f"{follower} takes the VIP")
        wait_until(lambda: not lab.has_vip_address(leader), timeout=lifetime + 10,
                   message=f"the kernel removes the VIP {leader} left")
        gone_after = time.monotonic() - killed_at
        assert cluster.holder() == follower
        cluster.start(leader)  # the link is up: it must not claim the VIP
        cluster.rejoins_as_follower(leader, follower, hold=3 * LEASE_TTL)
        settled = time.monotonic()
        times, failed = answers(probe, settled - 2 * LEASE_TTL, settled)
        served, _ = answers(probe, killed_at - 1, settled)
    finally:
        watch.stop()
    overlap = watch.overlap()
    gap = max(b - a for a, b in itertools.pairwise(served))
    print(f"\nleader killed, link up: longest gap between the client's answers {gap:.3f}s; "
          f"the dead leader's VIP gone after {gone_after:.3f}s (lifetime {lifetime}s); "
          f"both held it for {overlap:.3f}s; {watch.samples} samples")
    # The last renewal came before the kill; the kernel looks about once a second.
    assert gone_after < lifetime + KERNEL_EXPIRY_SLACK, gone_after
    assert overlap < gone_after, (overlap, watch.holders)
    assert all(at < killed_at + gone_after for at in watch.both), watch.holders
    assert times and not failed, (len(times), failed)
    assert gap < BUSY_MACHINE_LIMIT, gap


SWITCHOVERS = 4


def test_a_node_of_higher_priority_takes_the_lead_back_and_handovers_fail_no_request(
    lab: Lab, harness: Harness,
) -> None:
    """Failback (preempt) and switchovers under a client with connection retry: every
    handover of the lead, none of them failing a request.

    The client also sends a request reset before any answer once more (an idempotent GET,
    as urllib3's read retries do), at most once per handover: a connection whose handshake
    the old leader completed in the last milliseconds before it removed the VIP loses the
    request that follows (the old leader no longer has the address and drops it), and its
    retransmission, after the new leader's gratuitous ARP, meets a reset from the new
    leader (seen in a packet capture on the client; in 2 of 6 runs, one request each).
    """
    cluster = local_cluster(lab, harness)
    watch = SplitBrainWatch(lab)
    watch.start()
    try:
        cluster.start("lb-2")  # priority 100, the default
        wait_until(lambda: cluster.holder() == "lb-2", timeout=10, message="lb-2 leads")
        probe = start_probe(lab, harness, "--retry-connect", "3", "--answer-timeout", "2",
                            "--retry-reset", "--stop-after", "120")
        wait_for_answers(probe)
        # (a) lb-1, of higher priority with preempt on, joins: it takes the lead back.
        joined_at = time.monotonic()
        cluster.start("lb-1", priority=200, preempt=True)
        wait_until(lambda: cluster.holder() == "lb-1", timeout=10,
                   message="lb-1 takes the lead back")
        preempted_after = time.monotonic() - joined_at
        assert cluster.status("lb-2")["reason"] == (
            "stepping down: switchover requested, handing the lead to lb-1")
        assert ("taking the lead back: I am lb-1 (priority 200, preempt on, back and ready for"
                in cluster.nodes["lb-1"].log_path.read_text())
        table = cluster.ninelives("lb-2", "status").stdout
        assert "lb-1 leads since" in table and "preempt on" not in table, table
        assert [line.split("│")[4].strip() for line in table.splitlines()
                if line.startswith("│ lb-")] == ["200", "100"], table
        assert "preempt on here" in " ".join(cluster.ninelives("lb-1", "status").stdout.split())
        # (b) switchovers back and forth: lb-1 does not take back a lead it handed over.
        took: list[str] = []
        for turn in range(SWITCHOVERS):
            leader, to = ("lb-1", "lb-2") if turn % 2 == 0 else ("lb-2", "lb-1")
            done = cluster.ninelives(leader, "switchover", "--to", to)
            assert done.returncode == 0, done
            took.append(done.stdout.split(" in ")[1].split()[0])
            wait_until(lambda t=to: cluster.holder() == t, timeout=10,
                       message=f"switchover {turn}: {to} holds the VIP")
        cluster.rejoins_as_follower("lb-2", "lb-1", hold=LEASE_TTL)  # after an even count
        handovers_end = time.monotonic()
        # (c) lb-1 dies (killed, link down), lb-2 takes over, lb-1 comes back: it takes the
        # lead back.
        cluster.nodes["lb-1"].kill()
        lab.set_link("lb-1", "down")
        wait_until(lambda: cluster.holder() == "lb-2", timeout=10, message="lb-2 takes over")
        # The probe asks one request at a time: an answer now means the request lb-1 died
        # with is over (it may have failed: a node loss is not a handover).
        took_over = time.monotonic()
        wait_until(lambda: restored_after(probe, took_over) is not None, timeout=10,
                   message="the client gets answers from lb-2")
        cluster.start("lb-1", priority=200, preempt=True)
        back_at = time.monotonic()
        lab.set_link("lb-1", "up")
        wait_until(lambda: cluster.holder() == "lb-1", timeout=10,
                   message="lb-1, back, takes the lead back")
        returned_after = time.monotonic() - back_at
        wait_until(lambda: restored_after(probe, time.monotonic() - 0.001) is not None,
                   timeout=10, message="the client gets answers after the failback")
        ended = time.monotonic()
    finally:
        watch.stop()
    served, failed = answers(probe, joined_at, handovers_end)
    retried = sum(1 for when, outcome in outcomes(probe)
                  if joined_at <= when <= handovers_end and " connects=1" not in outcome)
    resent = [when for when, outcome in outcomes(probe) if outcome.endswith(" resets=1")
              and (joined_at <= when <= handovers_end or back_at <= when <= ended)]
    longest = max(b - a for a, b in itertools.pairwise(served))
    after_return, failed_return = answers(probe, back_at, ended)
    print(f"\nfailback on join after {preempted_after:.3f}s, on return after "
          f"{returned_after:.3f}s; {SWITCHOVERS} switchovers ({', '.join(took)}); "
          f"{len(served)} requests over the handovers, {failed} failed, longest gap "
          f"{longest:.3f}s, {retried} requests needed more than one connect; after the "
          f"return {len(after_return)} answered, {failed_return} failed; "
          f"{len(resent)} sent again after a reset before any answer; "
          f"split-brain samples {len(watch.both)} of {watch.samples}")
    assert failed == 0, failed
    # The failback on join, the switchovers, the failback on return: a reset at most each.
    assert len(resent) <= SWITCHOVERS + 2, resent
    watch.assert_never_two()
    assert longest < MUST_RESTORE_WITHIN, longest
    assert after_return and failed_return == 0, failed_return
