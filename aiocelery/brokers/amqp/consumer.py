"""A worker's fetch endpoint on RabbitMQ: consume its queues on one channel, start what arrives
with begin.lua on the Redis task records.

RabbitMQ pushes up to ``prefetch`` unacknowledged messages per queue (by default the worker's
concurrency: a running task holds its message until its outcome is stored, so the worker never
holds more than its free slots). ``fetch`` takes what arrived, or waits for the first message.
Each message gets a delivery token (its ``Delivery.entry_id``) under which the broker acknowledges
it after settling. A message whose task another live worker runs is held until that lease ends and
looked at again (``begin.lua``: "held").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from aiocelery._redis.client import Client
from aiocelery._redis.scripts import Script
from aiocelery.brokers.amqp.link import AMQP_ERRORS, CHANNEL_GONE, AmqpLink, parse_body
from aiocelery.brokers.base import LeaseKeeper
from aiocelery.brokers.redis.keys import Keys
from aiocelery.wire.records import Delivery

log = logging.getLogger("aiocelery.broker")

Received = tuple[str, AbstractIncomingMessage]
"""A message and the queue it came from."""


class Inflight(NamedTuple):
    """A started delivery's message, acknowledged when its outcome is stored."""

    message: AbstractIncomingMessage
    task_id: str


class AmqpStarter:
    """begin.lua (RabbitMQ) over a batch of one queue's messages."""

    def __init__(self, client: Client, script: Script, keys: Keys, *, max_crashes: int, ttl_ms: int,
                 lease_ms: int) -> None:
        self._client = client
        self._script = script
        self._keys = keys
        self._max_crashes = max_crashes
        self._ttl_ms = ttl_ms
        self._lease_ms = lease_ms

    async def begin(self, queue: str, consumer: str, worker: str,
                    batch: Sequence[tuple[str, str, str]]) -> list[Any]:
        """Start ``batch`` (token, task id, publication); begin.lua's rows."""
        keys = [self._keys.dead(queue), *(self._keys.task(task_id) for _, task_id, _ in batch)]
        args: list[str | int] = [consumer, self._max_crashes, worker, self._ttl_ms, self._keys.done_prefix,
                                 self._lease_ms]
        for token, task_id, pub in batch:
            args += [token, task_id, pub]
        rows: list[Any] = await self._client.run_script(self._script, keys, args)
        return rows

    async def dead_letter(self, queue: str, worker: str, reason: str) -> None:
        """A message that names no task: a dead letter saying why (then it is acknowledged)."""
        await self._client.call("XADD", self._keys.dead(queue), "*", "id", "", "reason", reason,
                                "time_ms", await self._now_ms(), "worker", worker)

    async def _now_ms(self) -> int:
        seconds, micros = await self._client.call("TIME")
        return int(seconds) * 1000 + int(micros) // 1000


class AmqpConsumer:
    """One worker's consumers of its queues on one channel; deliveries are registered in
    ``inflight`` (token -> message) for the broker to acknowledge after settling."""

    def __init__(self, queues: list[str], name: str, worker: str, *, slots: int, link: AmqpLink,
                 starter: AmqpStarter, inflight: dict[str, Inflight], release_script: Script, client: Client,
                 keys: Keys, lease_keeper: Callable[[], LeaseKeeper]) -> None:
        self._queues = queues
        self.name = name
        self.worker = worker
        self._slots = slots
        """The worker's concurrency (0: unknown, then the first fetch's count)."""
        self._link = link
        self._starter = starter
        self._inflight = inflight
        self._release_script = release_script
        self._client = client
        self._keys = keys
        self._lease_keeper = lease_keeper
        self._buffer: deque[Received] = deque()
        self._arrived = asyncio.Event()
        self._channel: AbstractChannel | None = None
        self._tags: list[tuple[Any, str]] = []
        self._tokens = itertools.count(1)
        self._prefix = f"{name}:"
        """Every token of this consumer starts with it."""
        self._held: dict[asyncio.TimerHandle, Received] = {}
        """Messages whose task another live worker runs, until their next look."""

    async def _start(self, count: int) -> None:
        """Open the channel and consume every queue (prefetch: the AMQP block's, else the worker's
        concurrency; for a consumer made without it, ``count``, the first fetch's). Not the first
        fetch's count in a worker: its fetcher asks for a third of its slots at a time, and each
        running task holds its message unacknowledged, so the worker would run only that many."""
        prefetch = self._link.settings.prefetch_count or max(1, self._slots or count)
        await self._link.declare(self._queues)
        channel = await self._link.channel(prefetch)
        try:
            for queue in self._queues:
                # a (passive) declare, not get_queue(ensure=False): only a declared queue is known to
                # the robust channel, which consumes it again after a reconnect
                declared = await channel.declare_queue(queue, passive=True)
                tag = await declared.consume(functools.partial(self._on_message, queue))
                self._tags.append((declared, tag))
        except AMQP_ERRORS as exc:
            await channel.close()
            self._tags.clear()
            raise ConnectionError(f"RabbitMQ: cannot consume {', '.join(self._queues)}: {exc}") from exc
        self._channel = channel
        log.debug("consuming %s with prefetch %d", ", ".join(self._queues), prefetch)

    async def _on_message(self, queue: str, message: AbstractIncomingMessage) -> None:
        self._buffer.append((queue, message))
        self._arrived.set()

    async def fetch(self, count: int, block_s: float) -> list[Delivery]:
        """Up to ``count`` started deliveries of what RabbitMQ pushed, waiting up to ``block_s`` for
        the first (messages acknowledged unrun, or held, do not end the wait)."""
        if self._channel is None:
            await self._start(count)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_s
        while True:
            if not self._buffer:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), max(0.0, deadline - loop.time()))
            taken: list[Received] = []
            while self._buffer and len(taken) < count:
                taken.append(self._buffer.popleft())
            if not taken:
                return []
            try:
                started = await self._begin(taken)
            except BaseException:
                self._buffer.extendleft(reversed(taken))  # not started: look at them again on the next fetch
                raise
            if started or loop.time() >= deadline:
                return started

    async def _begin(self, taken: list[Received]) -> list[Delivery]:
        by_queue: dict[str, list[tuple[str, str, str]]] = {}
        messages: dict[str, Received] = {}
        for queue, message in taken:
            parsed = parse_body(message.body)
            if parsed is None:
                reason = f"malformed message: not '<publication> <task id>' but {message.body[:100]!r}"
                log.error("queue %s: %s; dead-lettered", queue, reason)
                await self._starter.dead_letter(queue, self.worker, reason)
                await settle_message(message, ack=True)
                continue
            token = f"{self.name}:{next(self._tokens)}"
            messages[token] = (queue, message)
            by_queue.setdefault(queue, []).append((token, *parsed))
        out: list[Delivery] = []
        for queue, batch in by_queue.items():
            for row in await self._starter.begin(queue, self.name, self.worker, batch):
                kind, task_id, token = row[0].decode(), row[1].decode(errors="replace"), row[2].decode()
                _, message = messages[token]
                if kind == "run":
                    attempt, deferrals = int(row[3]), int(row[7])
                    self._inflight[token] = Inflight(message, task_id)
                    out.append(Delivery(task_id, row[4].decode(errors="replace"), queue, token, attempt, row[5],
                                        bool(message.redelivered) or attempt - deferrals > 1, self.worker, row[6],
                                        deferrals, row[8], row[9], row[10]))
                elif kind == "held":
                    self._hold(queue, message, int(row[3]) / 1000)
                else:
                    if kind in ("missing", "dead"):
                        log.warning("message of task %s on queue %s dead-lettered at begin: %s", task_id, queue, kind)
                    await settle_message(message, ack=True)
        return out

    def _hold(self, queue: str, message: AbstractIncomingMessage, wait_s: float) -> None:
        """Keep a message whose task runs elsewhere; look again when that lease ends."""
        loop = asyncio.get_running_loop()

        def again() -> None:
            received = self._held.pop(handle)
            self._buffer.append(received)
            self._arrived.set()

        handle = loop.call_later(wait_s + 0.05, again)
        self._held[handle] = (queue, message)

    async def reclaim(self, count: int, min_idle_s: float) -> list[Delivery]:
        """Nothing to take over: RabbitMQ redelivers a dead worker's messages by itself."""
        return []

    def lease_keeper(self) -> LeaseKeeper:
        """A keeper renewing this consumer's leases in Redis, on its own connection (``leases.py``)."""
        return self._lease_keeper()

    async def release(self) -> int:
        """Stop consuming, put this consumer's running tasks back to PENDING (release.lua) and hand
        every message it holds back to RabbitMQ (nack with requeue). Returns how many running
        deliveries went back."""
        for queue, tag in self._tags:
            with contextlib.suppress(*CHANNEL_GONE):
                await queue.cancel(tag)
        self._tags.clear()
        released = 0
        tokens = [t for t in self._inflight if t.startswith(self._prefix)]
        if tokens:
            keys = [self._keys.task(self._inflight[t].task_id) for t in tokens]
            released = int(await self._client.run_script(self._release_script, keys, [self.name, *tokens]))
            for token in tokens:
                held = self._inflight.pop(token, None)
                if held is not None:
                    await settle_message(held.message, ack=False)
        for handle, (_, message) in list(self._held.items()):
            handle.cancel()
            await settle_message(message, ack=False)
        self._held.clear()
        while self._buffer:
            _, message = self._buffer.popleft()
            await settle_message(message, ack=False)
        return released

    async def close(self) -> None:
        """Close the channel (RabbitMQ requeues whatever it still held)."""
        for handle in self._held:
            handle.cancel()
        self._held.clear()
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*CHANNEL_GONE):
                await channel.close()


async def settle_message(message: AbstractIncomingMessage, *, ack: bool) -> None:
    """Ack (or nack with requeue) a message; on a channel that closed since, nothing: RabbitMQ has
    requeued the message already, and begin.lua decides again when it comes back."""
    try:
        if ack:
            await message.ack()
        else:
            await message.nack(requeue=True)
    except CHANNEL_GONE as exc:
        log.debug("message %s not %s: %s", message.delivery_tag, "acked" if ack else "requeued", exc)

