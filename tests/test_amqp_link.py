"""The RabbitMQ connection when RabbitMQ closes it: senders get ``SendError`` while it is down, and
the worker's consumers come back with aio-pika's robust connection (each test on a vhost of its own)."""

from __future__ import annotations

import asyncio
import time

import pytest

from aiocelery import App, AsyncResult, SendError
from aiocelery.brokers.amqp.broker import RELAY_IDLE_S
from aiocelery.brokers.redis.keys import Keys

from . import rabbitmq
from .conftest import make_config
from .helpers import raw_redis


def vhost_of(app: App) -> str:
    target = app.config.amqp_target
    assert target is not None
    return target.vhost


def channels(vhost: str) -> list[int]:
    """The channel count of each client connection of ``vhost``."""
    return [int(row[0]) for row in rabbitmq.connections(vhost, "channels")]


async def send_once_back(app: App, name: str, args: list[object], timeout: float) -> AsyncResult[object]:
    """Send until RabbitMQ takes one: each try under a new id, since a task whose send raised
    SendError is published by a relay only RELAY_CLAIM_MS (30 s) later (sending it again with its
    id finds its record and publishes nothing)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await app.send_task(name, args)
        except SendError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_send_while_rabbitmq_refuses_the_connection_raises_send_error(redis_url: str,
                                                                               key_prefix: str) -> None:
    """While the connection is down (closed by RabbitMQ, and reconnecting refused), a send raises
    SendError (the caller's cue to send again), never aio-pika's bare RuntimeError; once RabbitMQ
    takes connections again, sends work by themselves."""
    app = App(make_config("amqp", redis_url, key_prefix, send_timeout_s=2.0))
    vhost = vhost_of(app)
    try:
        await app.send_task("nobody.runs", [0])  # connected
        await asyncio.to_thread(rabbitmq.rabbitmqctl, "clear_permissions", "-p", vhost, rabbitmq.USER)
        try:
            await asyncio.to_thread(rabbitmq.close_all_connections, vhost)
            for i in range(3):  # the first sees the close itself, the next ones the connection down
                with pytest.raises(SendError) as info:
                    await app.send_task("nobody.runs", [i + 1])
                assert isinstance(info.value.__cause__, ConnectionError), repr(info.value.__cause__)
        finally:
            await asyncio.to_thread(rabbitmq.rabbitmqctl, "set_permissions", "-p", vhost, rabbitmq.USER,
                                    ".*", ".*", ".*")
        assert await send_once_back(app, "nobody.runs", [9], timeout=15) is not None
    finally:
        await app.close()


async def test_a_worker_consumes_again_after_rabbitmq_closed_its_connection(redis_url: str,
                                                                            key_prefix: str) -> None:
    config = make_config("amqp", redis_url, key_prefix, fetch_block_s=0.5)
    worker_app, client = App(config), App(config)

    @worker_app.task(name="Double")
    async def double(x: int) -> int:
        return 2 * x

    try:
        async with worker_app.worker(concurrency=2):
            first = await client.send_task("Double", [1])
            assert await first.get(timeout=10) == 2
            await asyncio.to_thread(rabbitmq.close_all_connections, vhost_of(client))
            after = await send_once_back(client, "Double", [2], timeout=15)
            assert await after.get(timeout=15) == 4  # the worker consumes again
    finally:
        await client.close()
        await worker_app.close()


async def test_concurrent_sends_share_one_publishing_channel(redis_url: str, key_prefix: str) -> None:
    """Fifty sends at once on a new App open one channel, not one each (they were never closed)."""
    app = App(make_config("amqp", redis_url, key_prefix))
    try:
        await asyncio.gather(*(app.send_task("nobody.runs", [i]) for i in range(50)))
        assert await asyncio.to_thread(channels, vhost_of(app)) == [1]
    finally:
        await app.close()


async def test_a_task_whose_send_failed_is_published_by_a_relay(redis_url: str, key_prefix: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A send whose publish fails leaves the task's record and its hold in the delayed set; once
    the hold expires (RELAY_CLAIM_MS, 30 s: here made due at once), a worker's relay publishes it.
    The hold is added without waking the relays, so a relay that found nothing due must look again
    by itself (it used to sleep until the next wake message: the task was never published)."""
    config = make_config("amqp", redis_url, key_prefix, fetch_block_s=0.5)
    worker_app, sender = App(config), App(config)

    @worker_app.task(name="Double")
    async def double(x: int) -> int:
        return 2 * x

    async def refused(*args: object, **kwargs: object) -> None:
        raise ConnectionError("RabbitMQ refused it (the test)")

    try:
        async with worker_app.worker(concurrency=2):
            assert await (await sender.send_task("Double", [1])).get(timeout=10) == 2  # the relay found nothing
            monkeypatch.setattr(sender.broker.link, "publish", refused)
            with pytest.raises(SendError) as info:
                await sender.send_task("Double", [21])
            task_id = info.value.task_id
            async with raw_redis(redis_url) as client:
                delayed = Keys(key_prefix).delayed(config.default_queue)
                assert await client.zscore(delayed, task_id) is not None  # held for the failed sender
                seconds, micros = await client.time()
                await client.zadd(delayed, {task_id: seconds * 1000 + micros // 1000})  # as if 30 s had passed
            assert await worker_app.AsyncResult(task_id).get(timeout=RELAY_IDLE_S + 5) == 42
    finally:
        await sender.close()
        await worker_app.close()
