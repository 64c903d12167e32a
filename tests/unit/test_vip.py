"""The VIP decision (pure) and the gratuitous ARP frame."""

from __future__ import annotations

import ipaddress

import pytest

from ninelives.cluster.vip import VipAction, VipPlan, address_lifetime, garp_frame, plan

WHERE = ("10.0.0.100/24", "eth0")


def test_the_leader_adds_the_vip_it_lacks_and_keeps_the_one_it_has() -> None:
    assert plan(True, False, *WHERE, "I lead") == VipPlan(
        VipAction.ADD, "adding 10.0.0.100/24 on eth0: I lead")
    assert plan(True, True, *WHERE, "I lead").action is VipAction.NONE


def test_the_leader_renews_the_address_lifetime_when_it_renewed_its_lease() -> None:
    assert plan(True, True, *WHERE, "renewed", refresh=True) == VipPlan(
        VipAction.REFRESH, "renewing 10.0.0.100/24 on eth0: renewed")
    assert plan(True, False, *WHERE, "renewed", refresh=True).action is VipAction.ADD
    assert plan(False, True, *WHERE, "stepped down", refresh=True).action is VipAction.REMOVE


@pytest.mark.parametrize(("ttl", "seconds"), [(0.5, 1), (1.0, 1), (1.5, 2), (2.0, 2), (30.0, 30)])
def test_the_address_lives_at_least_one_lease_in_whole_seconds(ttl: float, seconds: int) -> None:
    assert address_lifetime(ttl) == seconds


def test_a_node_that_does_not_lead_removes_a_vip_it_finds() -> None:
    why = "I start as a follower and hold no leader lease"
    assert plan(False, True, *WHERE, why) == VipPlan(
        VipAction.REMOVE, f"removing 10.0.0.100/24 on eth0, as I do not lead: {why}")
    assert plan(False, False, *WHERE, why).action is VipAction.NONE


def test_a_gratuitous_arp_names_the_vip_as_sender_and_target() -> None:
    mac = bytes.fromhex("020000000001")
    frame = garp_frame(mac, ipaddress.IPv4Address("10.0.0.100"))
    assert len(frame) == 60
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac and frame[12:14] == b"\x08\x06"
    arp = frame[14:42]
    assert arp[:8] == bytes.fromhex("0001080006040001")  # Ethernet, IPv4, request
    assert arp[8:14] == mac and arp[14:18] == bytes([10, 0, 0, 100])
    assert arp[18:24] == b"\x00" * 6 and arp[24:28] == bytes([10, 0, 0, 100])
    with pytest.raises(ValueError, match="6-byte MAC"):
        garp_frame(b"\x01", ipaddress.IPv4Address("10.0.0.100"))
