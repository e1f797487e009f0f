"""The Redis broker: Streams with one consumer group per queue, every write a Lua script.

See ``brokers/lua/*.lua`` for each step and ``_redis/keys.py`` for the data model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from aiocelery._redis.batcher import ScriptBatcher
from aiocelery._redis.client import Client, blocking_client
from aiocelery._redis.connection import Target
from aiocelery._redis.errors import ReplyError
from aiocelery._redis.pubsub import PubSubHub
from aiocelery._redis.replies import Entry, entries, info, text
from aiocelery.brokers.base import Outgoing, Published
from aiocelery.brokers.redis.keys import GROUP, Keys
from aiocelery.brokers.redis.leases import RedisLeaseKeeper
from aiocelery.brokers.redis.scripts import Scripts
from aiocelery.brokers.redis.workflow_calls import prepare_call, workflow_call
from aiocelery.timing.reconnect import Backoff
from aiocelery.wire.records import DeadLetter, Delivery, ErrorInfo, Settlement
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
                 connect_timeout_s: float = 5.0) -> None:
        self._target = target
        self._socket_timeout_s = socket_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._client = client
        self._hub = hub
        self._keys = keys
        self._scripts = Scripts.load()
        self._enqueue = ScriptBatcher(client, self._scripts.enqueue, merge=True, unit_keys=4, timeout_s=send_timeout_s)
        self._settle = ScriptBatcher(client, self._scripts.settle, merge=True, unit_keys=4)
        self._settle_workflow = ScriptBatcher(client, self._scripts.settle)  # more keys: one call each
        self._begin_script = ScriptBatcher(client, self._scripts.begin)
        self._ttl_ms = int(result_ttl_s * 1000)
        self._max_crashes = max_crashes
        self._queue_keys: dict[str, tuple[str, str, str, str]] = {}
        self._no_dedup = keys.dedup("-")

    async def publish(self, items: Sequence[Outgoing]) -> list[Published]:
        """Run the enqueue script for each item: concurrent single sends share one script call,
        and many items go in one round trip (one script call per 256). Each round trip is bounded
        by ``send_timeout_s`` (TimeoutError)."""
        if len(items) == 1:
            keys: list[str] = []
            args: list[str | int | bytes] = []
            self._enqueue_unit(items[0], keys, args)
            return [_published(await self._enqueue.call(keys, args), items[0])]
        replies = await self._enqueue.run_units(items, self._enqueue_unit)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [_published(reply, item) for reply, item in zip(replies, items, strict=True)]

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

    def consumer(self, queues: Sequence[str], name: str, worker: str) -> RedisConsumer:
        """A consumer with its own blocking connection for XREADGROUP."""
        return RedisConsumer(self, list(queues), name, worker)

    async def _begin(self, queue: str, consumer: str, worker: str, fetched: list[Entry]) -> list[Delivery]:
        """Run begin.lua on a fetched batch of one queue; returns the deliveries to run."""
        pairs: list[str] = []
        task_keys: list[str] = []
        for entry_id, fields in fetched:
            task_id = _str(fields.get(b"id") or b"")
            pairs += [_str(entry_id), task_id]
            task_keys.append(self._keys.task(task_id))
        _, rows = await self._begin_script.call([self._keys.stream(queue), self._keys.dead(queue), *task_keys],
                                                [*self._begin_argv(consumer, worker), "", *pairs])
        return self._deliveries(queue, worker, rows)

    async def _read_and_begin(self, queue: str, consumer: str, worker: str, count: int) -> tuple[int, list[Delivery]]:
        """begin.lua reading up to ``count`` new entries itself (no BLOCK): one round trip when
        work is waiting. Returns how many entries it read (0: the queue has none) and the deliveries."""
        read, rows = await self._begin_script.call([self._keys.stream(queue), self._keys.dead(queue)],
                                                   [*self._begin_argv(consumer, worker), count])
        return int(read), self._deliveries(queue, worker, rows)

    def _begin_argv(self, consumer: str, worker: str) -> list[str | int]:
        """begin.lua's ARGV 1-7 (see the script's header)."""
        return [GROUP, consumer, self._max_crashes, worker, self._ttl_ms, self._keys.done_prefix, self._keys.task("")]

    @staticmethod
    def _deliveries(queue: str, worker: str, rows: list[Any]) -> list[Delivery]:
        out: list[Delivery] = []
        for row in rows:
            kind = _str(row[0])
            if kind != "run":
                log.warning("delivery %s of task %s skipped at begin: %s", _str(row[2]), _str(row[1]), kind)
                continue
            attempt, deferrals = int(row[3]), int(row[8])
            out.append(Delivery(_str(row[1]), _str(row[4]), queue, _str(row[2]), attempt, row[5],
                                attempt - deferrals > 1 or row[6] > 1, worker, row[7], deferrals, row[9],
                                row[10], row[11]))  # positional: fields in Delivery's order
        return out

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

    async def dead_letters(self, queue: str, count: int = 100) -> list[DeadLetter]:
        """XRANGE of the queue's dead-letter stream."""
        reply = await self._client.call("XRANGE", self._keys.dead(queue), "-", "+", "COUNT", count)
        return [_dead_letter(entry_id, fields) for entry_id, fields in entries(reply)]

    async def requeue_dead(self, queue: str, entry_id: str) -> None:
        """requeue.lua: the task goes back to the stream with its id; its dead letter is removed."""
        found = entries(await self._client.call("XRANGE", self._keys.dead(queue), entry_id, entry_id))
        if not found:
            raise ValueError(f"no dead letter {entry_id} in queue {queue!r}")
        task_id = found[0][1].get(b"id", b"").decode()
        ok, why = await self._client.run_script(
            self._scripts.requeue, [self._keys.task(task_id), self._keys.stream(queue), self._keys.dead(queue)],
            [entry_id, task_id])
        if not int(ok):
            raise ValueError(f"cannot requeue task {task_id} (dead letter {entry_id}): {why.decode()}")

    async def purge_dead(self, queue: str) -> int:
        """Delete the dead-letter stream."""
        key = self._keys.dead(queue)
        count = int(await self._client.call("XLEN", key))
        await self._client.call("DEL", key)
        return count

    async def health_warnings(self) -> list[str]:
        """Check eviction policy, persistence and server version (RELIABILITY.md section 6)."""
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
        wake = asyncio.Event()

        def on_wake(_data: bytes | None) -> None:
            wake.set()

        channels = [self._keys.wake(q) for q in queues]
        for channel in channels:
            await self._hub.subscribe(channel, on_wake)
        backoff = Backoff()
        try:
            while True:
                wake.clear()
                try:
                    sleep_s = await self._promote_all(queues)
                    backoff.reset()
                except OSError as exc:  # connection lost or silent
                    sleep_s = backoff.next_delay()
                    log.warning("promoting delayed tasks failed (%s); retrying in %.2f s", exc, sleep_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), sleep_s)
        finally:
            for channel in channels:
                await asyncio.shield(self._hub.unsubscribe(channel, on_wake))

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


def _str(data: bytes) -> str:
    """Text from Redis that any client may have written: never fail a whole batch on one bad byte."""
    return data.decode("utf-8", errors="backslashreplace")


def _opt(value: int | None) -> int | str:
    return "" if value is None else value


def _published(reply: Any, item: Outgoing) -> Published:
    """enqueue.lua's reply: 1 (created), else {0 | 2, state, the id that stands for the message}."""
    return Published(True, item.message.id) if reply == 1 else Published(False, reply[2].decode())


def _dead_letter(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode()

    error = text("error")
    return DeadLetter(entry_id=entry_id.decode(), task_id=text("id"), name=text("name"), reason=text("reason"),
                      time_ms=int(text("time_ms") or 0), worker=text("worker"),
                      error=ErrorInfo.from_json(orjson.loads(error)) if error else None)


class RedisConsumer:
    """One worker's fetch endpoint: XREADGROUP on a dedicated connection, then begin in a batch."""

    def __init__(self, broker: RedisBroker, queues: list[str], name: str, worker: str) -> None:
        self._broker = broker
        self._queues = queues
        self.name = name
        self.worker = worker
        self._client: Client | None = None
        self._busy = True
        """Work was waiting at the last fetch: read without blocking first."""

    async def fetch(self, count: int, block_s: float) -> list[Delivery]:
        """Up to ``count`` deliveries. While work is waiting, begin.lua reads and begins in one
        round trip per queue; when every queue is empty, XREADGROUP BLOCK waits for new entries
        on this consumer's own connection, then begin.lua starts them."""
        if self._busy:
            found = await self._read_waiting(count)
            if found is not None:
                return found
            self._busy = False  # every queue was empty: block for the next entry
        return await self._read_blocking(count, block_s)

    async def _read_waiting(self, count: int) -> list[Delivery] | None:
        """Read and begin without blocking; None when no queue had a new entry."""
        read_any, deliveries = False, list[Delivery]()
        for queue in self._queues:
            if len(deliveries) >= count:
                break
            try:
                read, started = await self._broker._read_and_begin(queue, self.name, self.worker,
                                                                   count - len(deliveries))
            except ReplyError as exc:
                await self._recover(exc)
                return deliveries
            read_any = read_any or read > 0
            deliveries += started
        return deliveries if read_any else None

    async def _read_blocking(self, count: int, block_s: float) -> list[Delivery]:
        b = self._broker
        if self._client is None:
            self._client = blocking_client(b._target, block_s, socket_timeout=b._socket_timeout_s,
                                           connect_timeout=b._connect_timeout_s)
        streams = [b._keys.stream(q) for q in self._queues]
        try:
            reply: Any = await self._client.call(
                "XREADGROUP", "GROUP", GROUP, self.name, "COUNT", count, "BLOCK", max(1, int(block_s * 1000)),
                "STREAMS", *streams, *[">"] * len(streams))
        except ReplyError as exc:
            await self._recover(exc)
            return []
        if not reply:
            return []
        self._busy = True
        by_stream = {text(name): entries(items) for name, items in reply}
        deliveries: list[Delivery] = []
        for queue in self._queues:
            fetched = by_stream.get(b._keys.stream(queue))
            if fetched:
                deliveries += await b._begin(queue, self.name, self.worker, fetched)
        return deliveries

    async def reclaim(self, count: int, min_idle_s: float) -> list[Delivery]:
        """XAUTOCLAIM deliveries idle past their lease (no locks: the command is atomic), then begin them."""
        b = self._broker
        out: list[Delivery] = []
        for queue in self._queues:
            if len(out) >= count:
                break
            stream = b._keys.stream(queue)
            try:
                reply: Any = await b._client.call("XAUTOCLAIM", stream, GROUP, self.name, int(min_idle_s * 1000),
                                                  "0-0", "COUNT", count - len(out))
            except ReplyError as exc:
                await self._recover(exc)
                return out
            claimed = entries(reply[1])
            if claimed:
                log.warning("reclaiming %d delivery(ies) of queue %s whose lease expired", len(claimed), queue)
                out += await b._begin(queue, self.name, self.worker, claimed)
        return out

    async def _recover(self, exc: ReplyError) -> None:
        """NOGROUP: the consumer group is gone (Redis restarted empty, or the queue was deleted)."""
        if exc.code != "NOGROUP":
            raise exc
        b = self._broker
        if not await b._client.call("EXISTS", b._keys.epoch):
            log.error("DATA LOSS: Redis lost its data (restarted without persistence, or flushed); tasks "
                      "queued or running before are gone and their waiters get ResultLost. Enable AOF.")
        else:
            log.warning("consumer group missing (queue deleted?); recreating it")
        await b.ensure_queues(self._queues)

    def lease_keeper(self) -> RedisLeaseKeeper:
        """A lease keeper with its own synchronous connection."""
        return RedisLeaseKeeper(self._broker._target, self._broker._keys, self.name)

    async def release(self) -> int:
        """Hand every delivery still pending for this consumer back to the tail of its queue:
        three round trips per queue (what is pending, which tasks, release.lua for each)."""
        b, released = self._broker, 0
        for queue in self._queues:
            stream = b._keys.stream(queue)
            pending: Any = await b._client.call("XPENDING", stream, GROUP, "-", "+", 10_000, self.name)
            entry_ids = [text(item[0]) for item in pending]
            if not entry_ids:
                continue
            ranges = await b._client.call_many([("XRANGE", stream, e, e) for e in entry_ids])
            calls: list[tuple[Sequence[str], Sequence[str]]] = []
            for entry_id, reply in zip(entry_ids, ranges, strict=True):
                if isinstance(reply, ReplyError):
                    raise reply
                found = entries(reply)
                task_id = found[0][1].get(b"id", b"").decode() if found else ""
                calls.append(([b._keys.task(task_id), stream], [GROUP, self.name, entry_id, task_id]))
            for reply in await b._client.run_scripts(b._scripts.release, calls):
                if isinstance(reply, ReplyError):
                    raise reply
                released += int(reply == 1)
        return released

    async def close(self) -> None:
        """Close the blocking connection."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
