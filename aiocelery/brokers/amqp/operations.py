"""Operations with RabbitMQ as the broker: queue numbers and purge ask RabbitMQ; dead letters,
the worker registry and control messages are the Redis ones (they live in the result backend)."""

from __future__ import annotations

from aio_pika.exceptions import ChannelNotFoundEntity

from aiocelery._redis.client import Client
from aiocelery._redis.pubsub import PubSubHub
from aiocelery.brokers.amqp.link import AMQP_OR_OS_ERRORS, AmqpLink, parse_body
from aiocelery.brokers.operations import QueueStats
from aiocelery.brokers.redis.keys import Keys
from aiocelery.brokers.redis.operations import RedisOperations
from aiocelery.brokers.redis.scripts import load_script
from aiocelery.exceptions import BrokerError

PURGE_BATCH = 500
"""Task ids revoked per round trip while purging."""


class AmqpOperations(RedisOperations):
    """Operations on RabbitMQ and the Redis result backend."""

    def __init__(self, client: Client, hub: PubSubHub, keys: Keys, ttl_ms: int, link: AmqpLink) -> None:
        super().__init__(client, hub, keys, ttl_ms)
        self._link = link
        self._revoke = load_script("revoke")

    async def queue_stats(self, queue: str) -> QueueStats:
        """Waiting: RabbitMQ's ready messages; running: the tasks live workers report for this
        queue; delayed and dead: Redis. RabbitMQ does not tell a message's age over AMQP, so
        ``oldest_waiting_s`` is None."""
        try:
            waiting, _ = await self._link.queue_counts(queue)
        except AMQP_OR_OS_ERRORS as exc:
            raise BrokerError(f"queue stats failed on RabbitMQ: {type(exc).__name__}: {exc}. Check that RabbitMQ "
                              "is reachable and try again.") from exc
        running = sum(1 for w in await self.workers() for task in w.get("active", ()) if task.get("queue") == queue)
        redis = await self._redis_counts(queue)
        return QueueStats(queue, waiting, running, redis[0], redis[1], None)

    async def _redis_counts(self, queue: str) -> tuple[int, int]:
        try:
            delayed, dead = await self._client.call_many([("ZCARD", self._keys.delayed(queue)),
                                                         ("XLEN", self._keys.dead(queue))])
        except OSError as exc:
            raise BrokerError(f"queue stats failed on Redis: {exc}. Check that Redis is reachable.") from exc
        return int(delayed), int(dead)

    async def purge(self, queue: str) -> int:
        """Take every ready message off the RabbitMQ queue and every task off the delayed set; each
        task not running yet becomes REVOKED ("purged"). Returns how many tasks were revoked."""
        try:
            ids = await self._drain(queue)
        except ChannelNotFoundEntity:
            ids = []
        except AMQP_OR_OS_ERRORS as exc:
            raise BrokerError(f"purge failed on RabbitMQ: {type(exc).__name__}: {exc}. Check that RabbitMQ is "
                              "reachable and try again.") from exc
        delayed = self._keys.delayed(queue)
        ids += [m.decode() for m in await self._client.call("ZRANGE", delayed, 0, -1)]
        await self._client.call("DEL", delayed)
        revoked = 0
        for i in range(0, len(ids), PURGE_BATCH):
            calls: list[tuple[list[str], list[str | int]]] = [
                ([self._keys.task(t)], [self._ttl_ms, self._keys.done(t), self._keys.revoke_channel(), "", t, "purged"])
                for t in ids[i:i + PURGE_BATCH]]
            revoked += sum(r == b"REVOKED" for r in await self._client.run_scripts(self._revoke, calls))
        return revoked

    async def _drain(self, queue: str) -> list[str]:
        """basic.get every ready message of ``queue``, collect its task id and acknowledge it."""
        channel = await self._link.channel()
        ids: list[str] = []
        try:
            declared = await channel.get_queue(queue, ensure=True)
            while (message := await declared.get(fail=False, no_ack=False)) is not None:
                parsed = parse_body(message.body)
                if parsed is not None:
                    ids.append(parsed[0])
                await message.ack()
        finally:
            if not channel.is_closed:
                await channel.close()
        return ids
