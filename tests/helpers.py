"""Helpers shared by the test modules: app factories and looks behind the broker's back.

The looks (dead letters, injected deliveries, raw Redis) read the same facts on memory://, on
Redis and on RabbitMQ (whose records are in the Redis result backend), so one test can assert
them on all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis

from aiocelery import App
from aiocelery.backends.redis import RedisBackend
from aiocelery.brokers.base import Published
from aiocelery.brokers.memory.broker import MemoryBroker, MemoryStore
from aiocelery.brokers.redis.keys import Keys

from .conftest import make_config


class Apps:
    """Makes Apps for one test (``kind``, per-test prefix) and closes every one of them on exit."""

    def __init__(self, kind: str, redis_url: str, key_prefix: str) -> None:
        self.kind = kind
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self._made: list[App] = []

    def __call__(self, **changes: Any) -> App:
        changes.setdefault("fetch_block_s", 0.5)
        app = App(make_config(self.kind, self.redis_url, self.key_prefix, **changes))
        self._made.append(app)
        return app

    async def __aenter__(self) -> Apps:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for app in self._made:
            await app.close()


def memory_store(app: App) -> MemoryStore:
    """The MemoryStore behind a memory:// app."""
    broker = app.broker
    assert isinstance(broker, MemoryBroker)
    return broker.store


@asynccontextmanager
async def raw_redis(url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client for looking at keys directly; closed on exit."""
    client = aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


async def dead_letters(app: App, queue: str) -> list[dict[str, str]]:
    """The dead-letter entries of ``queue``: memory's list, or XRANGE of the Redis dead stream."""
    if app.config.is_memory:
        return [dict(entry) for entry in memory_store(app).dead.get(queue, [])]
    async with raw_redis(app.config.backend_url) as client:
        entries: Any = await client.xrange(Keys(app.config.key_prefix).dead(queue))
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def inject_delivery(app: App, queue: str, task_id: str) -> None:
    """Add a delivery of ``task_id`` to ``queue``'s ready entries, as a reclaim or a duplicate would."""
    if app.config.is_memory:
        memory_store(app).add_ready(queue, task_id)
        return
    if app.config.is_amqp:
        async with raw_redis(app.config.backend_url) as client:
            pub = await client.hget(Keys(app.config.key_prefix).task(task_id), "pub")
        await publish_raw(app, queue, b"%s %s" % (pub or b"0", task_id.encode()))
        return
    async with raw_redis(app.config.backend_url) as client:
        await client.xadd(Keys(app.config.key_prefix).stream(queue), {"id": task_id})


async def publish_raw(app: App, queue: str, body: bytes) -> None:
    """Publish ``body`` to ``queue`` on the app's RabbitMQ, by hand (persistent, confirmed)."""
    import aio_pika

    connection = await aio_pika.connect(app.config.broker)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await app.broker.ensure_queues([queue])
        await channel.default_exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                               routing_key=queue)
    finally:
        await connection.close()


async def subscriber_count(app: App, task_id: str) -> int:
    """How many listeners wait on ``task_id``'s done notification (memory) or channel (Redis)."""
    if app.config.is_memory:
        return len(memory_store(app).listeners.get(task_id, []))
    async with raw_redis(app.config.backend_url) as client:
        counts: Any = await client.pubsub_numsub(Keys(app.config.key_prefix).done(task_id))
    return int(counts[0][1])


async def settled(app: App, queue: str | None = None) -> bool:
    """True when ``queue`` (default: the app's default queue) holds no task: none waiting, none
    handed to a worker and not yet stored, none delayed.

    A task started by another one's outcome (a chain step, a link, an errback, a chord callback)
    is enqueued in the same atomic step that stores that outcome. So once every task a test sent
    is stored and this is true, whatever they started has run and been stored too: the positive
    signal that a worker got past the point where something unwanted would have run."""
    stats = await app.connections.operations.queue_stats(queue or app.config.default_queue)
    return stats.waiting == stats.running == stats.delayed == 0


def listeners(app: App, task_id: str) -> int:
    """How many waiters of this process listen for ``task_id``'s done notification: memory's
    listeners, or the ones registered on the Redis pub/sub hub (Redis itself counts one
    subscription for all of them)."""
    if app.config.is_memory:
        return len(memory_store(app).listeners.get(task_id, []))
    backend = app.connections.backend
    assert isinstance(backend, RedisBackend)
    hub = backend._hub
    channel = hub._channels.get(Keys(app.config.key_prefix).done(task_id))
    return 0 if channel is None else len(channel.listeners)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> bool:
    """True as soon as ``check()`` is; False if it never is within ``timeout`` (no timing asserted)."""
    steps = int(timeout / 0.02)
    for _ in range(steps):
        if await check():
            return True
        await asyncio.sleep(0.02)
    return await check()


def created(published: list[Published]) -> list[bool]:
    """Which of the published messages created a new task."""
    return [p.created for p in published]
