"""Active/passive on a three-member etcd, in network namespaces: partitions and lost members.

Topology: the lab of tests/integration/test_cluster_vip.py (lb-1, lb-2, backend, client on
one bridge) plus etcd-1, etcd-2 and etcd-3, one etcd member each (10.77.0.41-43), started
here with temporary data directories. Both nodes use all three endpoints, ``lease_ttl: 3s``.
A thread looks at both nodes' interfaces all along: never may both hold the VIP on a link
that is up. A host is *cut off* with its link up: what it sends to the hosts named is
silently lost (:meth:`Lab.cut_off`), so its requests time out as over a cut cable.
"""

from __future__ import annotations

import time
from collections.abc import Generator

import pytest

from tests.support.etcd import Etcd, etcd_binary, raft_leader, start_etcd_cluster
from tests.support.netlab import (
    HOSTS,
    NODES,
    Cluster,
    Lab,
    SplitBrainWatch,
    built_lab,
    needs_netns,
    other,
    start_backend,
)
from tests.support.node import Harness, wait_until

pytestmark = [needs_netns, pytest.mark.skipif(etcd_binary() is None, reason="needs etcd")]

ETCD_HOSTS = {"etcd-1": 41, "etcd-2": 42, "etcd-3": 43}
LEASE_TTL = 3.0
STEP_DOWN_AT = 2 / 3 * LEASE_TTL  # at the latest, after the last renewal was sent
SLACK = 1.0  # seconds for a loaded machine: a turn of the loop, netlink, the watcher's view


@pytest.fixture
def lab() -> Generator[Lab, None, None]:
    with built_lab({**HOSTS, **ETCD_HOSTS}) as made:
        yield made


def current_raft_leader(members: list[Etcd], lab: Lab) -> Etcd | None:
    try:
        return raft_leader(members, lab.exec("client"))
    except (AssertionError, OSError, ValueError):
        return None  # an election in progress


def test_on_etcd_a_cut_off_leader_steps_down_before_another_leads(
    lab: Lab, harness: Harness,
) -> None:
    etcds = start_etcd_cluster(harness, {name: lab.address(name) for name in ETCD_HOSTS},
                               lab.exec)
    start_backend(lab, harness)
    cluster = Cluster(lab, harness, {
        "coordinator": "etcd",
        "etcd": {"endpoints": [m.client_url for m in etcds], "prefix": f"/nl/{lab.tag}"},
        "lease_ttl": f"{LEASE_TTL:g}s",
    })
    watch = SplitBrainWatch(lab)
    watch.start()
    try:
        leader = cluster.start_all()
        follower = other(leader)

        # (a) the etcd member that leads etcd's own raft is killed: the node keeps the lead.
        kept, since = leader, cluster.status(leader)["since"]
        victim = raft_leader(etcds, lab.exec("client"))
        victim.kill()
        killed_at = time.monotonic()
        alive = [m for m in etcds if m is not victim]
        # Without a renewal after the kill it would step down by killed_at + STEP_DOWN_AT.
        while time.monotonic() < killed_at + LEASE_TTL:
            assert cluster.holder() == leader, "the leader lost the VIP to an etcd member's death"
        status = cluster.status(leader)
        assert (status["role"], status["since"]) == ("leader", since), status
        new_raft = wait_until(lambda: current_raft_leader(alive, lab), timeout=10,
                              message="etcd elects another member")
        assert new_raft is not victim

        # (b) the leader cut off from etcd and from its peer, its link up.
        cut = [name for name in ETCD_HOSTS if lab.address(name) in
               {m.client_url.split("//")[1].split(":")[0] for m in alive}]
        cut_at = time.monotonic()
        lab.cut_off(leader, *cut, follower)
        wait_until(lambda: lab.holds_vip(follower), timeout=15,
                   message=f"{follower} takes the VIP")
        taken_after = time.monotonic() - cut_at
        status = cluster.status(leader)
        assert status["role"] == "follower", status
        assert status["reason"].startswith("stepping down: could not renew within 2/3"), status
        left = next(at for at, held in watch.holders if at > cut_at and leader not in held)
        took = next(at for at, held in watch.holders if at > cut_at and follower in held)
        assert left - cut_at < STEP_DOWN_AT + SLACK, watch.holders
        lab.reconnect(leader, *cut, follower)
        cluster.rejoins_as_follower(leader, follower, hold=LEASE_TTL)
        leader, follower = follower, leader

        # (c) etcd lost by every node, the peers still reach each other: the leader steps
        # down after its lease and nobody leads until etcd is back.
        lost_at = time.monotonic()
        for name in NODES:
            lab.cut_off(name, *cut)
        wait_until(lambda: cluster.holder() is None, timeout=15,
                   message=f"{leader} steps down without etcd")
        stepped_after = time.monotonic() - lost_at
        while time.monotonic() < lost_at + 2 * LEASE_TTL:
            assert cluster.holder() is None, "a node led without etcd"
        statuses = {name: cluster.status(name) for name in NODES}
        assert all(s["role"] == "follower" for s in statuses.values()), statuses
        assert statuses[leader]["reason"].startswith("stepping down: could not renew"), statuses
        back_at = time.monotonic()
        for name in NODES:
            lab.reconnect(name, *cut)
        wait_until(cluster.holder, timeout=15, message="a node leads once etcd is back")
        led_again_after = time.monotonic() - back_at
    finally:
        watch.stop()
    print(f"\netcd raft leader killed: {kept} kept the lead; cut off: the old leader removed "
          f"the VIP {left - cut_at:.3f}s after the cut, the new one added it "
          f"{took - cut_at:.3f}s after ({took - left:.3f}s with nobody), seen "
          f"{taken_after:.3f}s after; etcd lost by all: stepped down after "
          f"{stepped_after:.3f}s, led again {led_again_after:.3f}s after etcd came back; "
          f"two VIP holders in {len(watch.both)} of {watch.samples} samples")
    watch.assert_never_two()
    assert took > left, watch.holders
    assert stepped_after < STEP_DOWN_AT + SLACK, stepped_after
