"""Workflow benchmark: a 10,000-member group and a 1,000-member chord through one worker.

Starts its own redis-server (persistence off) and a worker subprocess at concurrency 100, then
prints for each: publish time (client), completion time (publish to last result / callback),
and Redis commands per member (from INFO commandstats, everything the client and the worker
sent). Usage: ``python -m bench.workflows [--group 10000] [--chord 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402


async def commands(url: str) -> tuple[int, int]:
    """(all commands Redis ran, including those inside scripts; top-level requests)."""
    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    total = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
    top = sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0))
              for c in ("evalsha", "xreadgroup", "xautoclaim", "subscribe", "unsubscribe", "ping"))
    return total, top


def per(after: tuple[int, int], before: tuple[int, int], n: int) -> str:
    return (f"{(after[1] - before[1]) / n:.1f} requests (EVALSHA, XREADGROUP, SUBSCRIBE...) and "
            f"{(after[0] - before[0]) / n:.1f} Redis commands in all per member")


async def measure(url: str, group_n: int, chord_n: int) -> None:
    from aiocelery import chord, group
    from bench.wf_tasks import app, noop, total

    async with app:
        await (await noop.delay(0)).get(timeout=30)  # the worker is up
        before = await commands(url)
        t0 = time.perf_counter()
        g = await group(noop.s(i) for i in range(group_n)).apply_async()
        published = time.perf_counter()
        values = await g.get(timeout=300)
        done = time.perf_counter()
        assert values == list(range(group_n))
        print(f"group of {group_n:,}: publish {1000 * (published - t0):.0f} ms (one pipelined round trip, "
              f"{group_n / (published - t0):,.0f} members/s), all results {done - t0:.2f} s "
              f"({group_n / (done - t0):,.0f} members/s); "
              f"{per(await commands(url), before, group_n)}, the client's result waits included")
        before = await commands(url)
        t0 = time.perf_counter()
        result = await chord([noop.s(i) for i in range(chord_n)], total.s()).apply_async()
        published = time.perf_counter()
        value = await result.get(timeout=300)
        done = time.perf_counter()
        assert value == sum(range(chord_n))
        print(f"chord of {chord_n:,}: publish {1000 * (published - t0):.0f} ms, callback result after "
              f"{done - t0:.2f} s; {per(await commands(url), before, chord_n)} (the counter is one HSETNX + "
              "HINCRBY inside each member's settle script)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", type=int, default=10_000)
    parser.add_argument("--chord", type=int, default=1_000)
    args = parser.parse_args()
    server = RedisServer().start()
    os.environ.update(AIOCELERY_BROKER=server.url, AIOCELERY_KEY_PREFIX=f"wf-{uuid.uuid4().hex[:6]}")
    worker = subprocess.Popen([sys.executable, "-m", "aiocelery", "worker", "-A", "bench.wf_tasks:app", "-c", "100",
                               "-l", "warning"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL)
    try:
        asyncio.run(measure(server.url, args.group, args.chord))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        server.stop()


if __name__ == "__main__":
    main()
