"""Command health checks: real shell commands, one per server, with a timeout that leaves
no process behind; and a real node that takes a server out and back by its command."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ninelives.config import parse_config
from ninelives.health import HealthChecker
from ninelives.pool import Pool
from tests.support.aio import until
from tests.support.node import Harness, count_backends, one_pool_config, wait_until


def run(scenario: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(30):
            await scenario

    asyncio.run(bounded())


def make_pool(command: str, servers: dict[str, int], timeout: str = "1s") -> Pool:
    entries = "\n".join(
        f"      - {{name: {name}, address: 127.0.0.1:{port}}}" for name, port in servers.items()
    )
    text = f"""
listeners:
  - {{name: web, bind: [127.0.0.1:0], protocol: http, pool: app}}
pools:
  app:
    health:
      command: {command!r}
      interval: 2s
      fast_interval: 50ms
      down_interval: 50ms
      timeout: {timeout}
      rise: 1
      fall: 1
    servers:
{entries}
"""
    return Pool("app", parse_config(text, env={}).pools["app"])


def running(pid: int) -> bool:
    """Is ``pid`` a live process (not gone, not a zombie waiting to be reaped)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_exit_status_decides_and_the_reason_shows_what_the_command_said(tmp_path: Path) -> None:
    async def scenario() -> None:
        # One command for every server: it fails for a server whose flag file exists.
        command = (
            f"if [ -e {tmp_path}/{{server}}.down ]; then "
            "echo \"{server} at {host}:{port} is in trouble\" >&2; exit 3; fi; echo fine"
        )
        pool = make_pool(command, {"a1": 9001, "a2": 9002})
        (tmp_path / "a2.down").touch()
        checker = HealthChecker(pool, asyncio.get_running_loop(), rng=random.Random(1))
        await checker.first_round()
        a1, a2 = pool.by_name["a1"], pool.by_name["a2"]
        assert a1.healthy and a1.health_reason == "1 check passed: exit 0: fine"
        assert not a2.healthy
        assert a2.health_reason == "1 check failed: exit 3: a2 at 127.0.0.1:9002 is in trouble"
        assert pool.candidates == (a1,)
        checker.start()
        try:
            (tmp_path / "a2.down").unlink()
            (tmp_path / "a1.down").touch()
            await until(lambda: a2.healthy and not a1.healthy, "a1 down and a2 up")
            assert a1.health_reason.endswith("exit 3: a1 at 127.0.0.1:9001 is in trouble")
        finally:
            await checker.stop()

    run(scenario())


def test_placeholders_are_shell_quoted(tmp_path: Path) -> None:
    async def scenario() -> None:
        out = tmp_path / "seen"
        # printf receives each placeholder as one word: quoting keeps it from the shell.
        pool = make_pool(f"printf '%s|' {{server}} {{host}} {{port}} >> {out}", {"s.1": 9001})
        await HealthChecker(pool, asyncio.get_running_loop()).first_round()
        assert out.read_text() == "s.1|127.0.0.1|9001|"

    run(scenario())


def test_a_hung_command_times_out_and_its_whole_process_group_is_killed(tmp_path: Path) -> None:
    async def scenario() -> None:
        pids = tmp_path / "pids"
        # The shell, and a child of it, both write their pid and then hang.
        command = f"sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; wait"
        pool = make_pool(command, {"a1": 9001}, timeout="300ms")
        await HealthChecker(pool, asyncio.get_running_loop()).first_round()
        server = pool.by_name["a1"]
        assert not server.healthy
        assert server.health_reason == "1 check failed: timeout after 300ms"
        assert not server.answering  # a hung check is no answer (panic leaves it out)
        started = [int(pid) for pid in pids.read_text().split()]
        assert len(started) == 2
        # The shell is reaped at once (no zombie); the orphaned sleep soon after, by init.
        assert not running(started[1])
        await until(lambda: not any(running(pid) for pid in started), "no process left")

    run(scenario())


def test_what_a_passing_command_leaves_running_is_killed(tmp_path: Path) -> None:
    async def scenario() -> None:
        pids = tmp_path / "pids"
        # A background process that keeps stdout open would otherwise keep the check open.
        pool = make_pool(f"sleep 60 & echo $! > {pids}; echo started", {"a1": 9001})
        await HealthChecker(pool, asyncio.get_running_loop()).first_round()
        server = pool.by_name["a1"]
        assert server.health_reason == "1 check passed: exit 0: started"
        leftover = int(pids.read_text())
        await until(lambda: not running(leftover), "the background sleep to be killed")

    run(scenario())


def test_a_command_that_cannot_run_fails_with_the_shell_s_words() -> None:
    async def scenario() -> None:
        pool = make_pool("no-such-command-ninelives {host}", {"a1": 9001})
        await HealthChecker(pool, asyncio.get_running_loop()).first_round()
        reason = pool.by_name["a1"].health_reason
        assert reason.startswith("1 check failed: exit 127: "), reason
        assert "not found" in reason, reason

    run(scenario())


def test_a_node_takes_a_server_out_and_back_by_its_command(
    harness: Harness, tmp_path: Path
) -> None:
    a1, a2 = harness.backends("a1", "a2")
    health = {
        "command": f"test ! -e {tmp_path}/{{server}}.down",
        "interval": "1s",
        "timeout": "1s",  # a loaded machine may take a while to start a shell
        "fast_interval": "100ms",
        "down_interval": "100ms",
        "rise": 1,
        "fall": 1,
    }
    node = harness.node(one_pool_config([a1, a2], {"health": health, "slow_start": "0s"}))
    assert set(count_backends(node.addr(), 10)) == {"a1", "a2"}
    (tmp_path / "a1.down").touch()
    wait_until(lambda: node.server_status("app", "a1")["state"] == "down", message="a1 down")
    assert node.server_status("app", "a1")["reason"] == "1 check failed: exit 1"
    assert count_backends(node.addr(), 10) == {"a2": 10}
    (tmp_path / "a1.down").unlink()
    wait_until(lambda: node.server_status("app", "a1")["state"] == "up", message="a1 back")
    assert set(count_backends(node.addr(), 10)) == {"a1", "a2"}
