"""The failover systems of bench/vip_bench.py, each on the lab's two nodes (lb-1, lb-2).

- ``KeepalivedPair``: keepalived 2.2 (VRRP) moves the VIP; a ninelives node without a
  ``cluster:`` section on each node is the proxy, so only the failover mechanism differs
  from the ninelives rows.
- ``NinelivesPair``: ninelives' own HA loop (``cluster:`` with the ``local`` or the ``etcd``
  coordinator) moves the VIP.

Each pair starts both nodes, says when it is settled (one holder, the other ready to take
over), kills a node (every process of it at once, SIGKILL: a crash, no goodbye) and stops
what is left. keepalived runs in a session of its own, because it forks its VRRP process:
killing only the parent lets the child send a priority-0 advert and remove the VIP, a clean
handover that node loss does not give.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench_procs import Proc, Processes

from tests.support.netlab import NODES, VIP, Cluster, Lab, other
from tests.support.node import Harness, wait_until

# keepalived's own defaults, written out: priority 100 for the backup, so its skew is
# (256 - 100) / 256 of an advert and it takes over 3 adverts + skew after the last one
# (3.61 s with advert_int 1); the master has a higher priority, as in keepalived's example.
PRIORITY = {"lb-1": 150, "lb-2": 100}
STATE = {"lb-1": "MASTER", "lb-2": "BACKUP"}
MASTER_TIMEOUT = 20.0  # seconds for the first keepalived to take the VIP
STATE_LINE = re.compile(r"Entering (\w+) STATE")


class Pair(Protocol):
    name: str

    @property
    def setting(self) -> str: ...
    def start(self) -> None: ...
    def settled(self, holder: str) -> bool: ...
    def kill(self, node: str) -> None: ...
    def stop(self) -> None: ...


def keepalived_config(node: str, advert: float) -> str:
    # Sub-second adverts need VRRP version 3 (centiseconds); version 2 rounds them to 1 s.
    version = "" if advert >= 1 and advert == int(advert) else "    version 3\n"
    return (
        "global_defs {\n"
        f"    router_id {node}\n"
        "}\n"
        "vrrp_instance VI_1 {\n"
        f"    state {STATE[node]}\n"
        "    interface eth0\n"
        "    virtual_router_id 51\n"
        f"    priority {PRIORITY[node]}\n"
        f"    advert_int {advert:g}\n"
        f"{version}"
        "    virtual_ipaddress {\n"
        f"        {VIP}/24 dev eth0\n"
        "    }\n"
        "}\n"
    )


@dataclass
class KeepalivedPair:
    name: str
    lab: Lab
    harness: Harness
    processes: Processes
    advert: float
    directory: Path
    runs: int = 0
    keepalived: dict[str, Proc] = field(default_factory=dict)
    proxies: Cluster | None = None

    @property
    def setting(self) -> str:
        return f"VRRP, advert_int {self.advert:g}s" + (" (version 3)" if self.advert < 1 else "")

    def start(self) -> None:
        self.runs += 1
        self.proxies = Cluster(self.lab, self.harness, None)
        for node in NODES:
            self.proxies.start(node)
        # The master first: a backup started with it may time out before the master's
        # first advert (0.36 s with advert_int 0.1) and hold the VIP too until it hears it.
        first, second = NODES
        self._start_keepalived(first)
        wait_until(lambda: self._state(first) == "MASTER", timeout=MASTER_TIMEOUT,
                   message=f"keepalived on {first} enters MASTER state")
        self._start_keepalived(second)

    def _start_keepalived(self, node: str) -> None:
        base = self.directory / f"{self.name}-{node}-{self.runs}"
        conf = base.with_suffix(".conf")
        conf.write_text(keepalived_config(node, self.advert))
        # -n: no daemon; -l: log to the console (our log file); -D: detailed log;
        # -P: VRRP only (no IPVS checker); own pid files, as two run on one machine.
        argv = self.lab.exec(node, "keepalived", "-n", "-l", "-D", "-P", "-f", str(conf),
                             "-p", f"{base}.pid", "-r", f"{base}-vrrp.pid")
        self.keepalived[node] = self.processes.start(
            f"keepalived {node}", argv, base.with_suffix(".log"))

    def settled(self, holder: str) -> bool:
        return self._state(holder) == "MASTER" and self._state(other(holder)) == "BACKUP"

    def _state(self, node: str) -> str:
        """The VRRP state keepalived last logged entering on this node."""
        log = self.keepalived[node].log_path.read_text(errors="replace")
        states = STATE_LINE.findall(log)
        return states[-1] if states else ""

    def kill(self, node: str) -> None:
        self.processes.kill(self.keepalived[node])
        assert self.proxies is not None
        self.proxies.nodes[node].kill()

    def stop(self) -> None:
        self.processes.stop_all()
        if self.proxies is not None:
            for process in self.proxies.nodes.values():
                process.stop()


@dataclass
class NinelivesPair:
    name: str
    lab: Lab
    harness: Harness
    coordinator: str  # what the table says about it
    settings: Callable[[int], dict[str, Any]]  # run number -> the cluster section to use
    runs: int = 0
    nodes: Cluster | None = None

    @property
    def setting(self) -> str:
        return self.coordinator

    def start(self) -> None:
        self.runs += 1
        self.nodes = Cluster(self.lab, self.harness, self.settings(self.runs))
        for node in NODES:
            self.nodes.start(node)

    def settled(self, holder: str) -> bool:
        assert self.nodes is not None
        status = self.nodes.status(other(holder))
        leader = status.get("leader") or {}
        return bool(status["role"] == "follower" and leader.get("name") == holder)

    def kill(self, node: str) -> None:
        assert self.nodes is not None
        self.nodes.nodes[node].kill()

    def stop(self) -> None:
        if self.nodes is not None:
            for process in self.nodes.nodes.values():
                process.stop()
