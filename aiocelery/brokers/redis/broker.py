"""The Redis broker: Streams with one consumer group per queue, every write a Lua script.

See ``lua/*.lua`` for each step, ``keys.py`` for the data model, ``consumer.py`` for fetching.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from aiocelery._redis.batcher import ScriptBatcher
from aiocelery._redis.client import Client, blocking_client
from aiocelery._redis.connection import Target
from aiocelery._redis.errors import ReplyError
from aiocelery._redis.pubsub import PubSubHub
from aiocelery._redis.replies import info, text
from aiocelery.brokers.base import Outgoing, Published
from aiocelery.brokers.redis.consumer import RedisConsumer, Starter
from aiocelery.brokers.redis.keys import GROUP, Keys
from aiocelery.brokers.redis.scripts import Scripts
from aiocelery.brokers.redis.workflow_calls import prepare_call, workflow_call
from aiocelery.timing.reconnect import ReconnectDelay
from aiocelery.wire.records import Delivery, Settlement
from aiocelery.wire.workflow import ChordInit, Spec

log = logging.getLogger("aiocelery.broker")
PROMOTE_BATCH = 1000
"""Due tasks moved to their stream per promote.lua call (calls repeat while a batch comes back full)."""
CACHED_QUEUES = 1024
"""Queues whose key names the broker keeps built (more are built on each send)."""


class RedisBroker:
    """Publishes, fetches, settles and releases tasks on one Redis."""

    def __init__(self, target: Target, client: Client, hub: PubSubHub, keys: Keys, *, result_ttl_s: float,
                 max_crashes: int, send_timeout_s: float | None = None, socket_timeout_s: float = 10.0,
                 connect_timeout_s: float = 5.0, min_replica_acks: int = 0) -> None:
        self._target = target
        self._socket_timeout_s = socket_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._client = client
        self._hub = hub
        self._keys = keys
        self._scripts = Scripts.load()
        self._enqueue = ScriptBatcher(client, self._scripts.enqueue, merge=True, unit_keys=4, timeout_s=send_timeout_s,
                                      replicas=min_replica_acks)
        self._settle = ScriptBatcher(client, self._scripts.settle, merge=True, unit_keys=4)
        self._settle_workflow = ScriptBatcher(client, self._scripts.settle)  # more keys: one call each
        self._starter = Starter(ScriptBatcher(client, self._scripts.begin), keys, max_crashes=max_crashes,
                                ttl_ms=int(result_ttl_s * 1000))
        self._ttl_ms = int(result_ttl_s * 1000)
        self._queue_keys: dict[str, tuple[str, str, str, str]] = {}
        self._no_dedup = keys.dedup("-")

    async def publish(self, items: Sequence[Outgoing]) -> list[Published]:
        """Run the enqueue script for each item: concurrent single sends share one script call,
        and many items go in one round trip (one script call per 256). Each round trip is bounded
        by ``send_timeout_s`` (TimeoutError)."""
        replies = await self.enqueue(items)
        return [_published(reply, item) for reply, item in zip(replies, items, strict=True)]

    async def enqueue(self, items: Sequence[Outgoing]) -> list[Any]:
        """enqueue.lua's reply for each item (its header says what each means)."""
        if len(items) == 1:
            keys: list[str] = []
            args: list[str | int | bytes] = []
            self._enqueue_unit(items[0], keys, args)
            return [await self._enqueue.call(keys, args)]
        replies = await self._enqueue.run_units(items, self._enqueue_unit)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _enqueue_unit(self, item: Outgoing, keys: list[str], args: list[str | int | bytes]) -> None:
        """Append one message's 4 KEYS and 11 ARGV for enqueue.lua."""
        msg = item.message
        stream, delayed, wake, _ = self._queue_keys_of(msg.queue)
        keys += (self._keys.task(msg.id), stream, delayed,
                 self._keys.dedup(msg.dedup_key) if msg.dedup_key else self._no_dedup)
        args += (msg.id, msg.name, msg.queue, item.payload, msg.delay_ms, _opt(msg.eta_ms), wake,
                 _opt(msg.expires_ms), msg.dedup_ttl_ms if msg.dedup_key else "", _opt(msg.expires_in_ms), msg.wf)

    def _queue_keys_of(self, queue: str) -> tuple[str, str, str, str]:
        """A queue's stream, delayed set, wake channel and dead-letter stream, built once per queue
        (up to ``CACHED_QUEUES``)."""
        found = self._queue_keys.get(queue)
        if found is not None:
            return found
        found = self._keys.stream(queue), self._keys.delayed(queue), self._keys.wake(queue), self._keys.dead(queue)
        if len(self._queue_keys) < CACHED_QUEUES:
            self._queue_keys[queue] = found
        return found

    async def prepare_workflow(self, chords: Sequence[ChordInit], later: Sequence[Spec]) -> None:
        """Chord counters and placeholder records, in one script call per 500 keys."""
        for i in range(0, max(len(chords), len(later)), 500):
            keys, args = prepare_call(self._keys, chords[i:i + 500], later[i:i + 500], self._ttl_ms)
            if keys:
                await self._client.run_script(self._scripts.chord_open, keys, args)

    async def ensure_queues(self, queues: Sequence[str]) -> None:
        """Create each queue's consumer group at id 0 (never ``$``: earlier entries would be skipped)."""
        await self._client.call("SET", self._keys.epoch, str(time.time()), "NX")
        for queue in queues:
            await self._create_group(queue)

    async def _create_group(self, queue: str) -> None:
        try:
            await self._client.call("XGROUP", "CREATE", self._keys.stream(queue), GROUP, "0", "MKSTREAM")
        except ReplyError as exc:
            if exc.code != "BUSYGROUP":
                raise

    def consumer(self, queues: Sequence[str], name: str, worker: str, *, slots: int = 0) -> RedisConsumer:
        """A consumer with its own blocking connection for XREADGROUP (``slots`` unused: it reads on demand)."""
        return RedisConsumer(list(queues), name, worker, target=self._target, open_blocking=self._blocking_client,
                             client=self._client, keys=self._keys, starter=self._starter,
                             release_script=self._scripts.release, ensure_queues=self.ensure_queues)

    def _blocking_client(self, block_s: float) -> Client:
        """A one-connection client for blocking reads of up to ``block_s``."""
        return blocking_client(self._target, block_s, socket_timeout=self._socket_timeout_s,
                               connect_timeout=self._connect_timeout_s)

    async def settle(self, delivery: Delivery, settlement: Settlement) -> bool:
        """Store the outcome and XACK + XDEL in one fenced script; outcomes settled together share
        one script call (a workflow step's, which creates or fails other tasks, has its own)."""
        k = self._keys
        error = orjson.dumps(settlement.error.to_json()) if settlement.error else b""
        stream, delayed, wake, dead = self._queue_keys_of(delivery.queue)
        wf_keys, wf_ops = workflow_call(k, settlement.workflow, error) if settlement.workflow else ([], b"")
        keys = [k.task(delivery.task_id), stream, dead, delayed, *wf_keys]
        args = [GROUP, delivery.entry_id, delivery.attempt, settlement.state, settlement.result or b"",
                error, settlement.reason, self._ttl_ms, k.done(delivery.task_id), delivery.task_id,
                delivery.worker, settlement.countdown_ms, wake, "1" if settlement.dead_letter else "",
                wf_ops, k.prefix]
        if wf_ops:
            (done,) = await self._settle_workflow.call(keys, args)
        else:
            done = await self._settle.call(keys, args)
        if not done:
            log.warning("task %s attempt %d was no longer ours; its outcome was not stored",
                        delivery.task_id, delivery.attempt)
        return bool(done)

    async def revoke(self, task_id: str, terminate: bool, reason: str) -> str:
        """revoke.lua: stored in the task record (reaches workers started later), pushed when terminating."""
        k = self._keys
        state = await self._client.run_script(
            self._scripts.revoke, [k.task(task_id)],
            [self._ttl_ms, k.done(task_id), k.revoke_channel(), "1" if terminate else "", task_id, reason])
        return text(state)

    async def watch_revocations(self, on_terminate: Callable[[str], None]) -> None:
        """Listen on the revoke channel through the shared pub/sub connection."""
        def listener(data: bytes | None) -> None:
            if data:
                on_terminate(data.decode())

        channel = self._keys.revoke_channel()
        await self._hub.subscribe(channel, listener)
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self._hub.unsubscribe(channel, listener))

    async def health_warnings(self) -> list[str]:
        """Check eviction policy, persistence and server version (docs/delivery.md: what the Redis server must keep)."""
        server = info(await self._client.call("INFO", "server"))
        warnings = []
        version = tuple(int(p) for p in server.get("redis_version", "0").split(".")[:2])
        if version < (6, 2):
            warnings.append(f"Redis {server.get('redis_version')} is older than 6.2; XAUTOCLAIM needs 6.2")
        try:
            conf = await self._config(["maxmemory-policy", "appendonly", "save"])
            policy = conf.get("maxmemory-policy", "noeviction")
            if policy != "noeviction":
                warnings.append(f"maxmemory-policy is {policy}: Redis may evict queue keys and lose tasks; "
                                "set it to noeviction")
            if conf.get("appendonly") != "yes" and not conf.get("save"):
                warnings.append("persistence is off (appendonly no, no save points): a Redis restart loses "
                                "every queued task; enable AOF (appendfsync everysec or always)")
        except ReplyError:
            pass  # CONFIG is disabled (managed Redis): nothing to check
        return warnings

    async def _config(self, names: list[str]) -> dict[str, str]:
        """CONFIG GET of each name (one round trip)."""
        replies = await self._client.call_many([("CONFIG", "GET", name) for name in names])
        out: dict[str, str] = {}
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
            out.update({text(k): text(v) for k, v in zip(reply[::2], reply[1::2], strict=True)})
        return out

    async def promote_forever(self, queues: Sequence[str]) -> None:
        """Move due tasks to their streams; sleep until the next due time or a wake message."""
        await on_wake_forever(self._hub, [self._keys.wake(q) for q in queues], lambda: self._promote_all(queues),
                              "promoting delayed tasks")

    async def _promote_all(self, queues: Sequence[str]) -> float | None:
        """Promote every queue's due tasks; seconds until the next one is due (None: none is)."""
        soonest: float | None = None
        for queue in queues:
            while True:
                moved, next_ms = await self._client.run_script(
                    self._scripts.promote, [self._keys.delayed(queue), self._keys.stream(queue)], [PROMOTE_BATCH])
                if int(moved) < PROMOTE_BATCH:
                    break
            if int(next_ms) >= 0:
                wait = int(next_ms) / 1000
                soonest = wait if soonest is None else min(soonest, wait)
        return soonest

    async def now_ms(self) -> int:
        """Redis server time: every scheduler agrees on it, whatever its own clock says."""
        seconds, micros = await self._client.call("TIME")
        return int(seconds) * 1000 + int(micros) // 1000

    async def record_fired(self, name: str, fire_ms: int) -> int | None:
        """periodic.lua: keep the maximum handled fire time; returns the previous one."""
        last = await self._client.run_script(self._scripts.periodic, [self._keys.periodic(name)], [fire_ms])
        return None if last is None else int(last)

    async def close(self) -> None:
        """Nothing of its own to close: the app closes the shared client and hub."""


async def on_wake_forever(hub: PubSubHub, channels: Sequence[str], step: Callable[[], Awaitable[float | None]],
                          what: str) -> None:
    """Run ``step`` (it returns the seconds until it is due again, None: no time known), then
    again when that time comes or a message arrives on one of ``channels``; back off while it
    fails with a connection error. Runs until cancelled."""
    wake = asyncio.Event()

    def on_wake(_data: bytes | None) -> None:
        wake.set()

    for channel in channels:
        await hub.subscribe(channel, on_wake)
    backoff = ReconnectDelay()
    try:
        while True:
            wake.clear()
            try:
                sleep_s = await step()
                backoff.reset()
            except OSError as exc:  # connection lost or silent
                sleep_s = backoff.next_delay()
                log.warning("%s failed (%s); retrying in %.2f s", what, exc, sleep_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), sleep_s)
    finally:
        for channel in channels:
            await asyncio.shield(hub.unsubscribe(channel, on_wake))


def _opt(value: int | None) -> int | str:
    return "" if value is None else value


def _published(reply: Any, item: Outgoing) -> Published:
    """enqueue.lua's reply: 1 or 3 (created), else {0 | 2, state, the id that stands for the message}."""
    return Published(True, item.message.id) if isinstance(reply, int) else Published(False, reply[2].decode())
