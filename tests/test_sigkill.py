"""SIGKILL a worker mid-task: the delivery must stay pending in Redis, nothing acked, nothing lost.

Redelivery by lease-based reclaim is tested in tests/chaos/test_worker_kills.py; here we only
prove the task survives the kill in a state a reclaimer can find: still in the stream, still in
the group's PEL under the dead worker's consumer, and its record still STARTED at attempt 1.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aiocelery import App, Config, ResultTimeout

from .procs import Procs, dead_key, stream_key, task_record, wait_state

TASKS = """\
@app.task(name="kill.sleepy")
async def sleepy() -> str:
    await asyncio.sleep(30)
    return "woke up"


@app.task(name="kill.sync_sleepy")
def sync_sleepy() -> str:
    time.sleep(30)
    return "woke up"
"""


@pytest.fixture
def procs(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[Procs]:
    with Procs(tmp_path, redis_url, key_prefix) as p:
        p.write_module("kill_tasks", TASKS)
        yield p


@pytest.fixture
async def rds(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.parametrize("task_name", ["kill.sleepy", "kill.sync_sleepy"])
async def test_sigkill_mid_task_leaves_the_delivery_pending(
        procs: Procs, rds: aioredis.Redis, redis_url: str, key_prefix: str, task_name: str) -> None:
    queue = "aiocelery"
    stream = stream_key(key_prefix, queue)
    worker = procs.worker("kill_tasks:app", "-c", "4", "-n", "doomed")
    async with App(Config(broker=redis_url, key_prefix=key_prefix)) as client:
        result = await client.send_task(task_name)
        await wait_state(rds, key_prefix, result.id, "STARTED", proc=worker)
        [(entry_id, fields)] = await rds.xrange(stream)
        assert fields[b"id"].decode() == result.id

        worker.signal(signal.SIGKILL)
        assert await worker.wait(10) == -signal.SIGKILL
        assert "stopped" not in worker.stderr  # it really died: no graceful shutdown ran

        # the stream entry is still there, unacknowledged, owned by the dead worker's consumer
        assert [(e, f[b"id"].decode()) for e, f in await rds.xrange(stream)] == [(entry_id, result.id)]
        summary = await rds.xpending(stream, "aiocelery")
        assert summary["pending"] == 1, summary
        [consumer] = summary["consumers"]
        assert consumer["pending"] == 1
        owner = consumer["name"].decode()
        assert owner.startswith(f"doomed:{worker.pid}:"), owner  # the consumer name is name:pid:random
        [detail] = await rds.xpending_range(stream, "aiocelery", "-", "+", 10)
        assert detail["message_id"] == entry_id
        assert detail["times_delivered"] == 1

        # the record is intact: still STARTED at attempt 1, no outcome, no crash counted yet
        record = await task_record(rds, key_prefix, result.id)
        assert record["state"] == "STARTED", record
        assert record["attempt"] == "1", record
        assert record["crashes"] == "0", record
        assert record["name"] == task_name
        assert record["queue"] == queue
        assert record["payload"]
        assert "result" not in record
        assert "error" not in record
        assert await rds.ttl(f"{key_prefix}:task:{result.id}") == -1  # not expiring: nothing finished it
        assert not await rds.exists(dead_key(key_prefix, queue))

        # through the API: STARTED, and get() times out instead of inventing an outcome
        assert await client.AsyncResult(result.id).state() == "STARTED"
        with pytest.raises(ResultTimeout):
            await result.get(timeout=0.3)


async def test_sigkill_does_not_touch_queued_tasks(
        procs: Procs, rds: aioredis.Redis, redis_url: str, key_prefix: str) -> None:
    # One running task and more waiting in the stream than the worker fetches (-c 1): after the
    # kill the running one is pending in the PEL and the others are still undelivered entries.
    stream = stream_key(key_prefix, "aiocelery")
    worker = procs.worker("kill_tasks:app", "-c", "1")
    async with App(Config(broker=redis_url, key_prefix=key_prefix)) as client:
        first = await client.send_task("kill.sleepy")
        await wait_state(rds, key_prefix, first.id, "STARTED", proc=worker)
        queued = [await client.send_task("kill.sleepy") for _ in range(3)]
        worker.signal(signal.SIGKILL)
        assert await worker.wait(10) == -signal.SIGKILL

        ids = [f[b"id"].decode() for _, f in await rds.xrange(stream)]
        assert ids == [first.id, *(r.id for r in queued)]
        summary = await rds.xpending(stream, "aiocelery")
        assert summary["pending"] == 1, summary
        [detail] = await rds.xpending_range(stream, "aiocelery", "-", "+", 10)
        assert (await rds.xrange(stream, detail["message_id"], detail["message_id"]))[0][1][b"id"].decode() == first.id
        for r in queued:
            record = await task_record(rds, key_prefix, r.id)
            assert record["state"] == "PENDING", record
            assert record.get("attempt", "0") == "0", record  # never started: absent reads as 0
