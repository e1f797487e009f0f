"""10,000 no-op tasks through one worker subprocess at concurrency 100: every result right, once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aiocelery import App, AsyncResult, Config

from .procs import Procs, dead_key, stream_key, task_key

N = 10_000
CHUNK = 500

TASKS = """\
@app.task(name="load.noop")
async def noop(x: int) -> int:
    return x
"""


@pytest.fixture
def procs(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[Procs]:
    with Procs(tmp_path, redis_url, key_prefix) as p:
        p.write_module("load_tasks", TASKS)
        yield p


@pytest.fixture
async def rds(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.timeout(120)
async def test_ten_thousand_noops_through_one_worker(
        procs: Procs, rds: aioredis.Redis, redis_url: str, key_prefix: str) -> None:
    stream = stream_key(key_prefix, "aiocelery")
    worker = procs.worker("load_tasks:app", "-c", "100", "-l", "warning")
    await worker.wait_ready(rds, ["aiocelery"], key_prefix)

    async with App(Config(broker=redis_url, key_prefix=key_prefix)) as client:
        @client.task(name="load.noop")
        async def noop(x: int) -> int:
            return x

        results: list[AsyncResult[int]] = []
        for start in range(0, N, CHUNK):
            results += await asyncio.gather(*(noop.delay(i) for i in range(start, start + CHUNK)))
        assert len({r.id for r in results}) == N

        values: list[int] = []
        for start in range(0, N, CHUNK):
            values += await asyncio.gather(*(r.get(timeout=60) for r in results[start:start + CHUNK]))
        assert values == list(range(N))

    # every task ran exactly once (attempt 1) and ended SUCCESS
    async with rds.pipeline(transaction=False) as pipe:
        for r in results:
            pipe.hmget(task_key(key_prefix, r.id), "state", "attempt", "crashes")
        rows = await pipe.execute()
    assert {(state, attempt, crashes) for state, attempt, crashes in rows} == {(b"SUCCESS", b"1", b"0")}

    # nothing left in the stream or the group's PEL, nothing dead-lettered
    assert await rds.xlen(stream) == 0
    summary = await rds.xpending(stream, "aiocelery")
    assert summary["pending"] == 0, summary
    assert not await rds.exists(dead_key(key_prefix, "aiocelery"))

    worker.signal(signal.SIGTERM)
    assert await worker.wait(30) == 0, worker.describe()
    assert "Error" not in worker.stderr, worker.describe()  # e.g. no MaxConnectionsError, no failed settle
