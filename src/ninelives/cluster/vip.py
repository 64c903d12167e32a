"""The virtual IP: the leader holds it on its interface and announces it; nobody else does.

Whether this node should hold the address is a pure decision (:func:`plan`) from two
facts: does it lead, and is the address on its interface now. The HA loop applies it on
every decision it makes, so the address follows the role whatever happened in between
(an operator removed it by hand, an earlier run of this node crashed while holding it):
a node that does not lead and finds the address on its interface removes it.

The I/O is in :class:`Vip`: netlink through pyroute2 (each call in a worker thread, so a
slow kernel answer never stalls the event loop that serves traffic), and gratuitous ARPs
on a raw packet socket. On taking the address the leader sends :data:`GARP_COUNT`
gratuitous ARPs :data:`GARP_SPACING` apart, then as many again after
:data:`GARP_REPEAT_AFTER` (keepalived: 5 at once, 5 more after 5 s, its
``garp_master_repeat`` and ``garp_master_delay``): hosts and switches that missed the
first burst, or ignored it while their entry was locked (Linux's ``locktime``, 1 s), learn
the new owner from the later ones. An IPv6 address is added and removed the same way but
not announced (no unsolicited neighbour advertisement yet).

The address is added with a finite lifetime (``valid_lft`` and ``preferred_lft``, netlink's
``IFA_CACHEINFO``), :func:`address_lifetime` of the lease, and the leader renews it with
every renewal of its lease. A leader whose process dies (SIGKILL, a crash) while its link
stays up cannot remove the address; the kernel does, once the lifetime is over, instead of
answering ARP for it beside the new leader until the node is started again.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ninelives.config import VipConfig

log = logging.getLogger("ninelives.cluster.vip")

GARP_COUNT = 5
GARP_SPACING = 0.2  # seconds between the gratuitous ARPs of one burst
GARP_REPEAT_AFTER = 5.0  # seconds from the first burst to the second
ETH_P_ARP = 0x0806


class VipAction(Enum):
    ADD = "add"
    REFRESH = "refresh"  # the leader renewed its lease: renew the address's lifetime too
    REMOVE = "remove"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class VipPlan:
    action: VipAction
    reason: str


def address_lifetime(lease_ttl: float) -> int:
    """The VIP's lifetime on the interface, in the kernel's whole seconds: at least the lease.

    A leader renews the address with its lease and steps down (removing it) at two thirds of
    the lease at the latest, so an address that lives a whole lease from its last renewal
    never lapses under a leader. The kernel counts lifetimes in seconds, at least 1, and
    removes an expired address within about a second (its ``check_lifetime`` work).
    """
    return max(1, math.ceil(lease_ttl))


def plan(leading: bool, present: bool, address: str, interface: str, why: str,
         refresh: bool = False) -> VipPlan:
    """What to do with the VIP. ``why`` says why this node leads or does not; ``refresh``
    that the leader renewed its lease since the address's lifetime was last renewed."""
    where = f"{address} on {interface}"
    if leading and present:
        if refresh:
            return VipPlan(VipAction.REFRESH, f"renewing {where}: {why}")
        return VipPlan(VipAction.NONE, f"holding {where}: {why}")
    if leading:
        return VipPlan(VipAction.ADD, f"adding {where}: {why}")
    if present:
        return VipPlan(VipAction.REMOVE, f"removing {where}, as I do not lead: {why}")
    return VipPlan(VipAction.NONE, f"not holding {where}: {why}")


def garp_frame(mac: bytes, ip: ipaddress.IPv4Address) -> bytes:
    """A gratuitous ARP request (sender and target address both ``ip``), as keepalived sends,
    broadcast, padded to Ethernet's 60-byte minimum."""
    if len(mac) != 6:
        raise ValueError(f"expected a 6-byte MAC address, got {len(mac)} bytes")
    addr = ip.packed
    ethernet = b"\xff" * 6 + mac + ETH_P_ARP.to_bytes(2, "big")
    arp = (b"\x00\x01" b"\x08\x00" b"\x06\x04" b"\x00\x01"  # Ethernet, IPv4, sizes, request
           + mac + addr + b"\x00" * 6 + addr)
    return (ethernet + arp).ljust(60, b"\x00")


class VipError(Exception):
    """The address could not be added or removed; the message names the interface and why."""


class Vip:
    """Adds, removes and announces ``config.address`` on ``config.interface``."""

    def __init__(self, config: VipConfig, lifetime: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.address = str(config.address.ip)
        self.lifetime = lifetime  # seconds: see address_lifetime()
        self.prefixlen = config.address.network.prefixlen
        self.interface = config.interface
        self.shown = f"{config.address}"
        self.clock = clock
        self.held = False
        self.since: float | None = None  # wall time of the last add or remove
        self.reason = "not looked at yet"
        self.error = ""
        self.garps_sent = 0
        self._announcer: asyncio.Task[None] | None = None

    async def apply(self, leading: bool, why: str, refresh: bool = False) -> VipPlan:
        """Look at the interface, decide, act; raise VipError if netlink refused."""
        present = await asyncio.to_thread(self._present)
        decision = plan(leading, present, self.shown, self.interface, why, refresh)
        if decision.action is VipAction.ADD:
            await asyncio.to_thread(self._change, "add")
            self._announce()
        elif decision.action is VipAction.REFRESH:
            await asyncio.to_thread(self._change, "add")  # the same request: a new lifetime
        elif decision.action is VipAction.REMOVE:
            self._stop_announcing()
            await asyncio.to_thread(self._change, "del")
        if decision.action in (VipAction.ADD, VipAction.REMOVE):
            self.since = self.clock()
            self.reason = decision.reason
            log.info("vip: %s", decision.reason)
        self.held = leading
        self.error = ""
        return decision

    async def close(self) -> None:
        self._stop_announcing()

    def status(self) -> dict[str, Any]:
        return {"address": self.shown, "interface": self.interface, "held": self.held,
                "since": self.since, "reason": self.reason, "error": self.error,
                "garps_sent": self.garps_sent, "lifetime_s": self.lifetime}

    # -- netlink (in a worker thread) ------------------------------------------------------

    def _index(self, ipr: Any) -> int:
        found = ipr.link_lookup(ifname=self.interface)
        if not found:
            raise VipError(f"no interface {self.interface} in this network namespace")
        return int(found[0])

    def _present(self) -> bool:
        from pyroute2 import IPRoute

        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        with IPRoute() as ipr:
            index = self._index(ipr)
            return any(m.get("address") == self.address
                       for m in ipr.get_addr(index=index, family=family))

    def _change(self, command: str) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ipr:
            index = self._index(ipr)
            try:
                if command == "add":  # add, or renew the lifetime of the address already there
                    ipr.addr("replace", index=index, address=self.address,
                             prefixlen=self.prefixlen, valid_lft=self.lifetime,
                             preferred_lft=self.lifetime)
                else:
                    ipr.addr(command, index=index, address=self.address,
                             prefixlen=self.prefixlen)
            except NetlinkError as exc:
                done = errno.EEXIST if command == "add" else errno.EADDRNOTAVAIL
                if exc.code != done:  # already there / already gone: what we wanted
                    verb = "add" if command == "add" else "remove"
                    raise VipError(f"could not {verb} {self.shown} on {self.interface}: "
                                   f"{exc.args[-1]} (netlink error {exc.code})") from None

    def _mac(self) -> bytes:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            index = self._index(ipr)
            link = next(iter(ipr.get_links(index)))
            return bytes.fromhex(str(link.get("address")).replace(":", ""))

    def _send_garp(self, frame: bytes) -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as raw:
            raw.bind((self.interface, ETH_P_ARP))
            raw.send(frame)

    # -- announcing ------------------------------------------------------------------------

    def _announce(self) -> None:
        self._stop_announcing()
        ip = ipaddress.ip_address(self.address)
        if isinstance(ip, ipaddress.IPv4Address):
            self._announcer = asyncio.get_running_loop().create_task(self._garps(ip))

    def _stop_announcing(self) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
            self._announcer = None

    async def _garps(self, ip: ipaddress.IPv4Address) -> None:
        try:
            frame = garp_frame(await asyncio.to_thread(self._mac), ip)
            for burst in range(2):
                if burst:
                    await asyncio.sleep(GARP_REPEAT_AFTER - GARP_COUNT * GARP_SPACING)
                for _ in range(GARP_COUNT):
                    await asyncio.to_thread(self._send_garp, frame)
                    self.garps_sent += 1
                    await asyncio.sleep(GARP_SPACING)
        except (OSError, VipError, StopIteration) as exc:
            self.error = f"gratuitous ARP on {self.interface} failed: {exc}"
            log.error("vip: %s", self.error)
