"""``ninelives run`` with a bench-only hook: server transitions published on demand.

Not a test, and not part of ninelives. ``bench/uptime_load_bench.py`` starts it instead
of ``ninelives run``. Once the node serves, SIGUSR1 starts publishing state transitions of
the servers of the pool ``flappers`` on the node's own event log at ``--rate`` a second
(``up -> down -> up``, as a server failing and passing its checks would), SIGRTMIN+1
does the same with the uptime store detached from the log (published, not recorded), and
SIGUSR2 stops it. Each goes the way a real transition goes: ``EventLog.publish`` (logged
within its budget, kept for ``/v1/events``, gathered by the uptime store's journal,
handed to the subscribers of server events: none, without a cluster), then the store's
writer process commits it. Only the health checks that would have caused them are left
out.

    python bench/uptime_flood_node.py CONFIG [--rate 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import sys
from pathlib import Path

from ninelives import node as node_module
from ninelives.cli import main as cli_main
from ninelives.events import EventLog

FLAPPERS = "flappers"
TICK = 0.01  # seconds between two bursts of transitions


class Flood:
    """Publishes ``rate`` transitions a second while on, catching up after a late tick.
    Each server goes down and up in turn; the arguments of every transition are made once,
    so that what the hook itself costs the event loop is a call per transition."""

    def __init__(self, events: EventLog, servers: list[str], rate: float) -> None:
        self.events = events
        self.rate = rate
        down = [(f"{FLAPPERS}/{name}", "up", "down", "2 checks failed: connect refused")
                for name in servers]
        up = [(f"{FLAPPERS}/{name}", "down", "up", "2 checks passed") for name in servers]
        self.transitions = itertools.cycle(down + up)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        publish, transitions = self.events.publish, self.transitions
        began, sent = loop.time(), 0
        while True:
            await asyncio.sleep(TICK)
            due = int((loop.time() - began) * self.rate)
            for entity, old, new, reason in itertools.islice(transitions, due - sent):
                publish("server", entity, old, new, reason)
            sent = due


# What the bench switches between, by signal: no transitions; transitions published and
# recorded (the store attached to the log, as in a node); published only (the store
# detached from the log: what the recording costs is the difference).
OFF, RECORD, PUBLISH = signal.SIGUSR2, signal.SIGUSR1, signal.SIGRTMIN + 1


def install(rate: float) -> None:
    start = node_module.Node.start

    async def start_with_flood(self: node_module.Node) -> str:
        line = await start(self)
        store = self.uptime.store
        if store is None:
            raise RuntimeError("the node has no uptime store to record in")
        servers = [server.name for server in self.pools[FLAPPERS].servers]
        flood = Flood(self.events, servers, rate)

        def publish(record: bool) -> None:
            if record:
                store.attach(self.events)
            else:
                store.detach()
            flood.start()

        def stop() -> None:
            flood.stop()
            store.attach(self.events)  # a node's own events are recorded between phases

        self.loop.add_signal_handler(RECORD, publish, True)
        self.loop.add_signal_handler(PUBLISH, publish, False)
        self.loop.add_signal_handler(OFF, stop)
        return line

    node_module.Node.start = start_with_flood  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--rate", type=float, default=10_000.0)
    args = parser.parse_args()
    install(args.rate)
    sys.exit(cli_main(["run", str(args.config)]))


if __name__ == "__main__":
    main()
