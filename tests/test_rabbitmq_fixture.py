"""The RabbitMQ fixtures work: aio-pika reaches the session's vhost, confirms a publish, gets it back.

Also checks the helpers of ``tests/rabbitmq.py`` a broker's tests lean on: the queue lives in the
fixture's own vhost, and ``close_all_connections`` drops a client's connection from the server side.
"""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
from pamqp.commands import Basic

from . import rabbitmq, vhosts


async def test_publish_with_confirms_and_get_it_back(rabbitmq_vhost: str) -> None:
    amqp_url = rabbitmq.amqp_url(rabbitmq_vhost)
    assert amqp_url == f"amqp://guest:guest@127.0.0.1:5672/{rabbitmq_vhost}"
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(f"fixture-{uuid.uuid4().hex[:8]}", durable=True)
        confirmation = await channel.default_exchange.publish(
            aio_pika.Message(b"hello", message_id="m-1", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue.name,
        )
        assert isinstance(confirmation, Basic.Ack)  # confirmed by the broker, not just written

        depth = await asyncio.to_thread(rabbitmq.queue_depth, rabbitmq_vhost, queue.name)
        assert depth == 1  # in the fixture's vhost, not in "/"

        message = await queue.get(timeout=5)
        assert message is not None
        assert (message.body, message.message_id) == (b"hello", "m-1")
        await message.ack()
        assert await queue.get(fail=False) is None
        await queue.delete(if_unused=False, if_empty=False)


async def test_close_all_connections_drops_the_client(rabbitmq_vhost: str) -> None:
    amqp_url = rabbitmq.amqp_url(rabbitmq_vhost)
    connection = await aio_pika.connect(amqp_url)
    closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def on_close(_connection: object, exc: BaseException | None) -> None:
        if not closed.done():
            closed.set_result(exc)

    connection.close_callbacks.add(on_close)
    try:
        await connection.channel()
        out = await asyncio.to_thread(rabbitmq.close_all_connections, rabbitmq_vhost, "fixture test")
        assert "Closed 1 connections" in out
        reason = await asyncio.wait_for(closed, 10)
        assert "CONNECTION_FORCED - fixture test" in str(reason)
        assert not connection.connected.is_set()
    finally:
        await connection.close()


@pytest.fixture
def rabbitmq_vhost() -> str:
    """A vhost of this test's own (``vhosts.fresh_vhost``: fails, never skips, without RabbitMQ)."""
    return vhosts.fresh_vhost()
