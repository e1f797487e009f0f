"""The final record carried on a task's done notification: a get() that was waiting needs no read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from aiocelery import App, TaskFailed
from aiocelery.backends.redis import record_from_notice

from .conftest import make_config


@pytest.fixture
async def rds(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _notices(pubsub: PubSub, *task_ids: str) -> dict[str, bytes]:
    """The done message of each of ``task_ids``, in whatever order they come (tasks settled in
    one script call publish in the order they finished)."""
    found: dict[str, bytes] = {}
    while len(found) < len(task_ids):
        message = await pubsub.get_message(timeout=10)
        assert message is not None, f"no done notification for {set(task_ids) - set(found)}"
        if message["type"] == "pmessage":
            task_id = message["channel"].decode().rpartition(":")[2]
            if task_id in task_ids:
                found[task_id] = message["data"]
    return found


async def test_final_records_ride_on_the_notification(redis_url: str, key_prefix: str, rds: aioredis.Redis) -> None:
    app = App(make_config("redis", redis_url, key_prefix, fetch_block_s=0.2))

    @app.task(name="ok")
    async def ok(x: str) -> dict[str, object]:
        return {"echo": x, "n": [1, 2]}

    @app.task(name="boom")
    async def boom() -> None:
        raise ValueError("bad \u00e9 \n input")

    @app.task(name="big")
    async def big() -> str:
        return "x" * 20_000

    pubsub = rds.pubsub()
    await pubsub.psubscribe(f"{key_prefix}:done:*")
    async with app, app.worker(concurrency=2):
        results = (await ok.delay("h\u00e9llo \n \x00 world"), await boom.delay())
        notices = await _notices(pubsub, *(r.id for r in results))
        for result in results:
            data = notices[result.id]
            assert data.startswith(b"\x01"), data
            carried = record_from_notice(result.id, data)
            assert carried is not None and carried == await app.backend.get_record(result.id)
        assert await (await ok.delay("again")).get(timeout=10) == {"echo": "again", "n": [1, 2]}
        with pytest.raises(TaskFailed, match="bad"):
            await (await boom.delay()).get(timeout=10)
        large = await big.delay()  # over 8 KiB: announced by its state, and read
        data = (await _notices(pubsub, large.id))[large.id]
        assert data == b"SUCCESS" and record_from_notice(large.id, data) is None
        assert await large.get(timeout=10) == "x" * 20_000
    await pubsub.aclose()


def test_other_messages_are_not_records() -> None:
    for data in (b"REVOKED", b"FAILURE", b"\x01SUCCESS 1 2\nbroken", b""):
        assert record_from_notice("t", data) is None
