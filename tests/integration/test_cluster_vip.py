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
import os
import shutil
import statistics
import subprocess
import time

import pytest

from tests.support.netlab import (
    Cluster,
    Lab,
    SplitBrainWatch,
    answers,
    local_coordinator,
    restored_after,
    start_backend,
    start_probe,
)
from tests.support.node import NINELIVES, TOKEN, Harness, wait_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (network namespaces, veth pairs, a bridge)",
)

LEASE_TTL = 1.0
MUST_RESTORE_WITHIN = 1.5  # seconds: issue 4's must for `local` with a 1 s lease
BUSY_MACHINE_LIMIT = 3.0  # no single trial may exceed this, even on a loaded machine
TRIALS = 3




def test_the_vip_moves_to_the_follower_when_the_leader_dies_and_never_is_held_twice(
    lab: Lab, harness: Harness,
) -> None:
    start_backend(lab, harness)
    cluster = Cluster(lab, harness, local_coordinator(harness.directory / "cluster.db", LEASE_TTL))
    watch = SplitBrainWatch(lab)
    watch.start()
    try:
        cluster.start("lb-1")
        cluster.start("lb-2")
        leader = wait_until(cluster.holder, timeout=10, message="one node holds the VIP")
        probe = start_probe(lab, harness)
        wait_until(lambda: restored_after(probe, 0.0) is not None, timeout=10,
                   message="the client gets answers through the VIP")
        gaps: list[float] = []
        for trial in range(TRIALS):
            follower = "lb-2" if leader == "lb-1" else "lb-1"
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
            wait_until(lambda old=leader: cluster.status(old)["role"] == "follower"
                       and cluster.status(old)["leader"] is not None, timeout=10,
                       message=f"{leader} restarted follows")
            assert cluster.status(leader)["leader"]["name"] == follower
            held_until = time.monotonic() + 3 * LEASE_TTL
            while time.monotonic() < held_until:
                assert cluster.holder() == follower, f"trial {trial}: the VIP left {follower}"
            leader = follower
        # (d) a planned switchover, asked of the follower: the VIP moves back.
        follower = "lb-2" if leader == "lb-1" else "lb-1"
        asked_at = time.monotonic()
        done = subprocess.run(
            lab.exec(follower, str(NINELIVES), "switchover", "--to", follower,
                     "--admin", cluster.admin[follower], "--token", TOKEN),
            capture_output=True, text=True, timeout=60)
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
    assert not watch.both, f"both nodes held the VIP at {watch.both} ({watch.holders})"
    assert watch.samples > 100, watch.samples
    assert statistics.median(gaps) < MUST_RESTORE_WITHIN, gaps
    assert max(gaps) < BUSY_MACHINE_LIMIT, gaps
    assert switchover_gap < MUST_RESTORE_WITHIN, switchover_gap
