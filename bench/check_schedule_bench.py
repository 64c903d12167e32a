"""How long active checks take to see a server die and come back: ninelives' defaults
against HAProxy's schedule (inter 2s, fall 3, rise 2; fastinter and downinter default to
inter), both run by ninelives' own checker in one process, so that only the schedule
differs.

Each trial starts an HTTP server, lets it be checked, stops it at a random moment, times
until the checker marks it down, restarts it on the same port at a random moment and times
until it is up again. `python bench/check_schedule_bench.py [TRIALS]` (default 12, run
concurrently).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys

from aiohttp import web

from ninelives.config import parse_config
from ninelives.health import HealthChecker
from ninelives.pool import Pool

SCHEDULES = {
    "ninelives defaults (1s, fall 2, rise 2, fast 250ms, down 500ms)": (
        "{http: {path: /healthz}}"
    ),
    "HAProxy's (2s, fall 3, rise 2, no fastinter/downinter)": (
        "{http: {path: /healthz}, interval: 2s, fall: 3, rise: 2, "
        "fast_interval: 2s, down_interval: 2s}"
    ),
}
POLL = 0.005  # how often the trial looks at the server's health


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(port: int) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner, int(runner.addresses[0][1])


async def trial(health: str, seed: int) -> tuple[float, float]:
    """(seconds from death to down, seconds from restart to up) for one server."""
    rng = random.Random(seed)
    runner, port = await serve(0)
    text = (
        "listeners: [{name: web, bind: 127.0.0.1:0, pool: app}]\n"
        f"pools: {{app: {{health: {health}, panic: 0%,"
        f" servers: [{{name: a, address: 127.0.0.1:{port}}}]}}}}\n"
    )
    pool = Pool("app", parse_config(text, env={}).pools["app"])
    loop = asyncio.get_running_loop()
    checker = HealthChecker(pool, loop, rng=rng)
    server = pool.servers[0]
    await checker.first_round()
    checker.start()
    try:
        await asyncio.sleep(rng.uniform(0, 3))  # the checks are at some phase by now
        await runner.cleanup()
        died = loop.time()
        while server.healthy:
            await asyncio.sleep(POLL)
        down = loop.time() - died
        await asyncio.sleep(rng.uniform(0, 3))
        runner, _ = await serve(port)
        back = loop.time()
        while not server.healthy:
            await asyncio.sleep(POLL)
        return down, loop.time() - back
    finally:
        await checker.stop()
        await runner.cleanup()


async def main(trials: int) -> None:
    for name, health in SCHEDULES.items():
        results = await asyncio.gather(*(trial(health, seed) for seed in range(trials)))
        downs = [d for d, _ in results]
        ups = [u for _, u in results]
        print(
            f"{name}: dead -> down median {statistics.median(downs):.2f}s, max "
            f"{max(downs):.2f}s; back -> up median {statistics.median(ups):.2f}s, max "
            f"{max(ups):.2f}s ({trials} trials)"
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 12))
