"""A cluster-wide rate limit over four worker processes on a real Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aiocelery import App, Config, Signature

from .helpers import eventually

ROOT = Path(__file__).resolve().parent.parent

TASKS = """
import os
import time
import redis.asyncio as aioredis
from aiocelery import App, Config

app = App(Config.from_env())
ledger = aioredis.Redis.from_url(os.environ["AIOCELERY_BROKER"])


@app.task(name="limited", rate_limit="50/s")
async def limited(i: int) -> int:
    started = time.time()  # before any await: the moment the worker started it
    await ledger.rpush(os.environ["AIOCELERY_KEY_PREFIX"] + ":starts", repr(started))
    return i
"""


def spawn_workers(n: int, cwd: Path, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "aiocelery", "worker", "-A", "rate_tasks:app", "-c", "25", "-l", "warning"]
    return [subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL) for _ in range(n)]


@pytest.mark.timeout(120)
async def test_fifty_per_second_over_four_worker_processes(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    (tmp_path / "rate_tasks.py").write_text(textwrap.dedent(TASKS))
    env = {**os.environ, "AIOCELERY_BROKER": redis_url, "AIOCELERY_KEY_PREFIX": key_prefix,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    workers = spawn_workers(4, tmp_path, env)
    app = App(Config(broker=redis_url, key_prefix=key_prefix))
    probe = aioredis.Redis.from_url(redis_url)
    try:
        async def all_four_reading() -> bool:  # all four are up and blocked in XREADGROUP
            return sum(1 for c in await probe.client_list() if c.get("cmd") == "xreadgroup") >= 4

        try:
            assert await eventually(all_four_reading, timeout=30)
        finally:
            await probe.aclose()
        results = await app.send_many([Signature("limited", args=[i]) for i in range(1000)])
        values = await asyncio.gather(*(r.get(timeout=90) for r in results))
        rds = aioredis.Redis.from_url(redis_url)
        try:
            starts = sorted(float(x) for x in await rds.lrange(f"{key_prefix}:starts", 0, -1))
        finally:
            await rds.aclose()
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        await app.close()
    assert values == list(range(1000))
    assert len(starts) == 1000
    worst = max(sum(1 for s in starts[i:i + 60] if s - starts[i] < 1.0) for i in range(len(starts)))
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    print(f"\nrate limit 50/s over 4 processes: achieved {rate:.2f}/s, busiest one-second window {worst} starts")
    assert worst <= 50 + 5  # the limit plus its burst (a tenth of it by default)
    assert abs(rate - 50) <= 5  # within 10 %
