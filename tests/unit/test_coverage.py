"""Who served while a node was not running, from the members' records (pure)."""

from __future__ import annotations

from ninelives.cluster.coordinator import Member
from ninelives.cluster.coverage import Coverage, served_from


def member(name: str, role: str, since: float, health: str = "healthy") -> Member:
    return Member(name, f"{name}:9901", role, health, "", since)  # type: ignore[arg-type]


def test_active_passive_the_leader_served_since_it_took_the_lead() -> None:
    members = [member("lb-1", "leader", 500.0), member("lb-2", "follower", 100.0)]
    assert served_from(members, "lb-2", "active-passive") == Coverage(500.0, "lb-1")
    # My own old record (a restart within its lease) is not another node.
    assert served_from(members, "lb-1", "active-passive") is None


def test_active_active_the_earliest_healthy_member_and_nobody_unhealthy_or_untold() -> None:
    members = [member("lb-2", "active", 300.0), member("lb-3", "active", 200.0),
               member("lb-4", "active", 100.0, health="unhealthy"),
               member("lb-5", "active", 0.0)]
    assert served_from(members, "lb-1", "active-active") == Coverage(200.0, "lb-3")
    assert served_from([], "lb-1", "active-active") is None
    assert Coverage(200.0, "lb-3").describe() == "lb-3 served meanwhile"
