"""The RabbitMQ broker: RabbitMQ holds the queues, the Redis result backend everything else.

A task's record, its result, the delayed set, dedup keys, workflow state, dead letters and limits
live in Redis, written by the Redis broker's scripts with ``Keys(streams=False)`` (no stream: a
task made ready goes to the delayed set due now). RabbitMQ carries one small message per
publication (``"<publication> <task id>"``), durable and confirmed:

- ``publish``: enqueue.lua creates the record and holds the task for this sender in the delayed
  set; the sender publishes, waits for RabbitMQ's confirm, then drops its hold (unclaim.lua). A
  sender that fails in between leaves the hold, and a relay publishes the task when it expires.
- the relay (``promote_forever``, in every worker): claim.lua takes due tasks (delayed, retries,
  new workflow steps, requeued dead letters, expired holds), they are published and unclaimed.
- ``fetch`` (``consumer.py``): begin.lua starts a message's task if its publication is current.
- ``settle``: settle.lua stores the outcome, fenced by attempt, *then* the message is acknowledged;
  a crash in between redelivers a message whose task is final, acknowledged unrun.

See docs/delivery.md, "RabbitMQ", for the contract and the failure cases.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiocelery._redis.batcher import ScriptBatcher
from aiocelery._redis.client import Client
from aiocelery._redis.connection import Target
from aiocelery._redis.pubsub import PubSubHub
from aiocelery.brokers.amqp.acks import Acker
from aiocelery.brokers.amqp.consumer import AmqpConsumer, AmqpStarter, Inflight
from aiocelery.brokers.amqp.leases import AmqpLeaseKeeper
from aiocelery.brokers.amqp.link import AmqpLink, Publication
from aiocelery.brokers.amqp.scripts import AmqpScripts
from aiocelery.brokers.base import Outgoing, Published
from aiocelery.brokers.redis.broker import RedisBroker, on_wake_forever
from aiocelery.brokers.redis.keys import Keys
from aiocelery.wire.records import Delivery, Settlement
from aiocelery.wire.workflow import ChordInit, Spec

log = logging.getLogger("aiocelery.broker")
RELAY_BATCH = 500
"""Due tasks claimed and published per claim.lua call (calls repeat while a batch comes back full)."""
RELAY_IDLE_S = 5.0
"""The relay looks at the delayed set at least this often, whatever it found due: a sender holds
its tasks there (RELAY_CLAIM_MS) without waking the relays, so the tasks of a send whose publish
failed are published at most this long after their hold expires."""
HELD_FOR_US = 3
"""enqueue.lua's reply (alone, or first in a list) for a task held for its sender to publish."""


def _publication(reply: Any) -> int:
    """The publication enqueue.lua holds a task under for this sender to publish; 0: none (the task
    is delayed, or was there already and needs nothing from this send)."""
    if reply == HELD_FOR_US:
        return 1  # created now
    if isinstance(reply, list) and reply[0] == HELD_FOR_US:
        return int(reply[3])  # sent again while its earlier send was never confirmed
    return 0


class AmqpBroker:
    """Publishes to RabbitMQ, keeps records and outcomes in Redis (see the module docstring)."""

    def __init__(self, store: RedisBroker, link: AmqpLink, client: Client, hub: PubSubHub, keys: Keys,
                 redis_target: Target, *, result_ttl_s: float, max_crashes: int, lease_s: float,
                 send_timeout_s: float) -> None:
        assert not keys.streams, "the RabbitMQ broker's keys have no streams"
        self._store = store
        self._link = link
        self._client = client
        self._hub = hub
        self._keys = keys
        self._redis_target = redis_target
        self._scripts = AmqpScripts.load()
        self._lease_ms = int(lease_s * 1000)
        self._send_timeout_s = send_timeout_s
        self._starter = AmqpStarter(client, self._scripts.begin, keys, max_crashes=max_crashes,
                                    ttl_ms=int(result_ttl_s * 1000), lease_ms=self._lease_ms)
        self._inflight: dict[str, Inflight] = {}
        """Started deliveries of this process's consumers, by token: acknowledged after settling."""
        self._acker = Acker()
        self._unclaims: set[asyncio.Task[Any]] = set()
        self._unclaims_batched = ScriptBatcher(client, self._scripts.unclaim)

    @property
    def link(self) -> AmqpLink:
        """The connection to RabbitMQ (operations use it for queue numbers and purge)."""
        return self._link

    async def publish(self, items: Sequence[Outgoing]) -> list[Published]:
        """Records first (enqueue.lua, one round trip), then every task created ready is published
        and confirmed (bounded by ``send_timeout_s``); its hold is dropped after, in the background."""
        await self._link.declare(sorted({item.message.queue for item in items}))  # a bad name: nothing written
        replies = await self._store.enqueue(items)
        ours = [Publication(item.message.queue, item.message.id, _publication(reply), item.message.name)
                for item, reply in zip(items, replies, strict=True) if _publication(reply)]
        if ours:
            await self._link.publish(ours, self._send_timeout_s)
            self._unclaim_later(ours)
        return [Published(True, item.message.id) if isinstance(reply, int) else Published(False, reply[2].decode())
                for item, reply in zip(items, replies, strict=True)]

    def _unclaim_later(self, published: Sequence[Publication]) -> None:
        """Drop the holds of confirmed publications (unclaim.lua, one call per queue), not awaited:
        a hold that stays only makes a relay publish the task again later, as a stale duplicate."""
        task = asyncio.ensure_future(self._unclaim(published))
        self._unclaims.add(task)
        task.add_done_callback(self._unclaimed)

    def _unclaimed(self, task: asyncio.Task[Any]) -> None:
        self._unclaims.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("dropping send holds failed (a relay publishes those tasks again): %s", task.exception())

    async def _unclaim(self, published: Sequence[Publication]) -> None:
        by_queue: dict[str, list[str | int]] = {}
        for p in published:
            by_queue.setdefault(p.queue, [self._keys.task("")]).extend((p.task_id, p.pub))
        # concurrent sends' unclaims share a round trip (a pipeline): 1,000 sends at once, a few trips
        await asyncio.gather(*(self._unclaims_batched.call([self._keys.delayed(q)], args)
                               for q, args in by_queue.items()))

    async def prepare_workflow(self, chords: Sequence[ChordInit], later: Sequence[Spec]) -> None:
        """Chord counters and placeholder records, in Redis."""
        await self._store.prepare_workflow(chords, later)

    async def ensure_queues(self, queues: Sequence[str]) -> None:
        """The Redis epoch marker, and the exchange, queues and bindings on RabbitMQ."""
        await self._client.call("SET", self._keys.epoch, "amqp", "NX")
        await self._link.declare(queues)

    def consumer(self, queues: Sequence[str], name: str, worker: str, *, slots: int = 0) -> AmqpConsumer:
        """A consumer with its own channel, whose prefetch is ``slots`` (the worker's concurrency)."""
        return AmqpConsumer(list(queues), name, worker, slots=slots, link=self._link, starter=self._starter,
                            inflight=self._inflight, acker=self._acker, release_script=self._scripts.release,
                            client=self._client, keys=self._keys, lease_keeper=self._lease_keeper)

    def _lease_keeper(self) -> AmqpLeaseKeeper:
        return AmqpLeaseKeeper(self._redis_target, self._keys, self._lease_ms)

    async def settle(self, delivery: Delivery, settlement: Settlement) -> bool:
        """The outcome in Redis (settle.lua, fenced by attempt), then the message's ack: a crash
        between the two redelivers a message whose task is final, which begin.lua acks unrun."""
        stored = await self._store.settle(delivery, settlement)
        held = self._inflight.pop(delivery.entry_id, None)
        if held is not None:
            self._acker.ack(held.message)
        return stored

    async def revoke(self, task_id: str, terminate: bool, reason: str) -> str:
        """revoke.lua on the record; a running task's worker is told over Redis pub/sub."""
        return await self._store.revoke(task_id, terminate, reason)

    async def watch_revocations(self, on_terminate: Callable[[str], None]) -> None:
        """Terminate requests, over Redis pub/sub."""
        await self._store.watch_revocations(on_terminate)

    async def health_warnings(self) -> list[str]:
        """The Redis checks (it holds every record), and the queue type."""
        warnings = await self._store.health_warnings()
        if self._link.settings.queue_type == "classic":
            warnings.append("amqp.queue_type is classic: queues are not replicated over a RabbitMQ cluster; "
                            "use quorum queues (the default) so a RabbitMQ node's loss loses no task")
        return warnings

    async def promote_forever(self, queues: Sequence[str]) -> None:
        """The relay: publish due tasks to RabbitMQ; sleep until the next due time or a wake message."""
        await on_wake_forever(self._hub, [self._keys.wake(q) for q in queues], lambda: self._relay_all(queues),
                              "publishing due tasks to RabbitMQ")

    async def _relay_all(self, queues: Sequence[str]) -> float:
        """Claim, publish and unclaim every queue's due tasks; seconds until the next one is due, at
        most RELAY_IDLE_S (a failed sender's hold wakes nobody)."""
        soonest: float | None = None
        for queue in queues:
            while True:
                reply = await self._client.run_script(
                    self._scripts.claim, [self._keys.delayed(queue)], [RELAY_BATCH, self._keys.task("")])
                scanned, next_ms, pairs = int(reply[0]), int(reply[1]), reply[2:]
                claimed = [Publication(queue, pairs[i].decode(), int(pairs[i + 1]), "")
                           for i in range(0, len(pairs), 2)]
                if claimed:
                    await self._link.publish(claimed, self._send_timeout_s)
                    await self._unclaim(claimed)
                if scanned < RELAY_BATCH:
                    break
            if next_ms >= 0:
                soonest = next_ms / 1000 if soonest is None else min(soonest, next_ms / 1000)
        return RELAY_IDLE_S if soonest is None else min(soonest, RELAY_IDLE_S)

    async def now_ms(self) -> int:
        """Redis server time (the records' clock)."""
        return await self._store.now_ms()

    async def record_fired(self, name: str, fire_ms: int) -> int | None:
        """periodic.lua on Redis."""
        return await self._store.record_fired(name, fire_ms)

    async def close(self) -> None:
        """Finish dropping send holds, then close the RabbitMQ connection."""
        if self._unclaims:
            await asyncio.gather(*self._unclaims, return_exceptions=True)
        await self._acker.close()
        await self._link.close()
