"""The soak test's task; the worker imports this module (``-A bench.soak_tasks:app``).

Every execution is recorded on the LEDGER Redis (``LEDGER_URL``, a server the soak never
faults) before the task returns, so the ledger counts executions, not results:

    runs:<task id>   LIST  "<worker pid>:<attempt>" per execution, in order
    when:<task id>   LIST  the matching wall-clock time (s, 3 decimals), for diagnosis
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import redis.asyncio as aioredis

from aiocelery import App, Config, current_task

app = App(Config.from_env())

_ledger: aioredis.Redis | None = None


def ledger() -> aioredis.Redis:
    """One ledger client per worker process, created on first use (inside the worker's loop)."""
    global _ledger
    if _ledger is None:
        pool = aioredis.BlockingConnectionPool.from_url(os.environ["LEDGER_URL"], max_connections=64, timeout=None)
        _ledger = aioredis.Redis(connection_pool=pool)
    return _ledger


def expected(index: int) -> int:
    """The value ``record(index, ...)`` must return."""
    return index * 2 + 1


@app.task(name="soak.record")
async def record(index: int, max_sleep_ms: float) -> int:
    """Sleep up to ``max_sleep_ms``, record this execution in the ledger, return ``2 * index + 1``."""
    await asyncio.sleep(random.uniform(0, max_sleep_ms) / 1000)
    ctx = current_task()
    if ctx is None:
        raise RuntimeError("soak.record must run inside a worker")
    async with ledger().pipeline(transaction=True) as pipe:
        pipe.rpush(f"runs:{ctx.id}", f"{os.getpid()}:{ctx.attempt}")
        pipe.rpush(f"when:{ctx.id}", f"{time.time():.3f}")
        await pipe.execute()
    return expected(index)
