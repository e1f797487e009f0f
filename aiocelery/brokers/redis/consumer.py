"""A worker's fetch endpoint on Redis: read entries of its queues' streams, start them with begin.lua.

``Starter`` runs begin.lua (fence the attempt, count crashes, dead-letter poison, mark STARTED);
``RedisConsumer`` decides when to read without blocking (work is waiting), when to block on its
own connection (every queue is empty), when to take over expired leases, and what to hand back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiocelery._redis.batcher import ScriptBatcher
from aiocelery._redis.client import Client
from aiocelery._redis.connection import Target
from aiocelery._redis.errors import ReplyError
from aiocelery._redis.replies import Entry, entries, text
from aiocelery._redis.scripts import Script
from aiocelery.brokers.redis.keys import GROUP, Keys
from aiocelery.brokers.redis.leases import RedisLeaseKeeper
from aiocelery.wire.records import Delivery

log = logging.getLogger("aiocelery.broker")


class Starter:
    """begin.lua over a batch of one queue's entries: the deliveries that may run."""

    def __init__(self, script: ScriptBatcher, keys: Keys, *, max_crashes: int, ttl_ms: int) -> None:
        self._script = script
        self._keys = keys
        self._max_crashes = max_crashes
        self._ttl_ms = ttl_ms

    async def begin(self, queue: str, consumer: str, worker: str, fetched: list[Entry]) -> list[Delivery]:
        """Start entries this consumer already read (XREADGROUP, XAUTOCLAIM)."""
        pairs: list[str] = []
        task_keys: list[str] = []
        for entry_id, fields in fetched:
            task_id = _str(fields.get(b"id") or b"")
            pairs += [_str(entry_id), task_id]
            task_keys.append(self._keys.task(task_id))
        _, rows = await self._script.call([self._keys.stream(queue), self._keys.dead(queue), *task_keys],
                                          [*self._argv(consumer, worker), "", *pairs])
        return _deliveries(queue, worker, rows)

    async def read_and_begin(self, queue: str, consumer: str, worker: str, count: int) -> tuple[int, list[Delivery]]:
        """begin.lua reading up to ``count`` new entries itself (no BLOCK): one round trip when
        work is waiting. Returns how many entries it read (0: the queue has none) and the deliveries."""
        read, rows = await self._script.call([self._keys.stream(queue), self._keys.dead(queue)],
                                             [*self._argv(consumer, worker), count])
        return int(read), _deliveries(queue, worker, rows)

    def _argv(self, consumer: str, worker: str) -> list[str | int]:
        """begin.lua's ARGV 1-7 (see the script's header)."""
        return [GROUP, consumer, self._max_crashes, worker, self._ttl_ms, self._keys.done_prefix, self._keys.task("")]


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


def _str(data: bytes) -> str:
    """Text from Redis that any client may have written: never fail a whole batch on one bad byte."""
    return data.decode("utf-8", errors="backslashreplace")


class RedisConsumer:
    """One worker's fetch endpoint: XREADGROUP on a dedicated connection, then begin in a batch."""

    def __init__(self, queues: list[str], name: str, worker: str, *, target: Target,
                 open_blocking: Callable[[float], Client], client: Client, keys: Keys, starter: Starter,
                 release_script: Script, ensure_queues: Callable[[Sequence[str]], Awaitable[None]]) -> None:
        self._queues = queues
        self.name = name
        self.worker = worker
        self._target = target
        self._open_blocking = open_blocking
        self._commands = client
        """The shared command client (XAUTOCLAIM, XPENDING, release.lua)."""
        self._keys = keys
        self._starter = starter
        self._release_script = release_script
        self._ensure_queues = ensure_queues
        self._blocking: Client | None = None
        """This consumer's own connection for XREADGROUP BLOCK, opened on first use."""
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
                read, started = await self._starter.read_and_begin(queue, self.name, self.worker,
                                                                   count - len(deliveries))
            except ReplyError as exc:
                await self._recover(exc)
                return deliveries
            read_any = read_any or read > 0
            deliveries += started
        return deliveries if read_any else None

    async def _read_blocking(self, count: int, block_s: float) -> list[Delivery]:
        if self._blocking is None:
            self._blocking = self._open_blocking(block_s)
        streams = [self._keys.stream(q) for q in self._queues]
        try:
            reply: Any = await self._blocking.call(
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
            fetched = by_stream.get(self._keys.stream(queue))
            if fetched:
                deliveries += await self._starter.begin(queue, self.name, self.worker, fetched)
        return deliveries

    async def reclaim(self, count: int, min_idle_s: float) -> list[Delivery]:
        """XAUTOCLAIM deliveries idle past their lease (no locks: the command is atomic), then begin them."""
        out: list[Delivery] = []
        for queue in self._queues:
            if len(out) >= count:
                break
            try:
                reply: Any = await self._commands.call("XAUTOCLAIM", self._keys.stream(queue), GROUP, self.name,
                                                       int(min_idle_s * 1000), "0-0", "COUNT", count - len(out))
            except ReplyError as exc:
                await self._recover(exc)
                return out
            claimed = entries(reply[1])
            if claimed:
                log.warning("reclaiming %d delivery(ies) of queue %s whose lease expired", len(claimed), queue)
                out += await self._starter.begin(queue, self.name, self.worker, claimed)
        return out

    async def _recover(self, exc: ReplyError) -> None:
        """NOGROUP: the consumer group is gone (Redis restarted empty, or the queue was deleted)."""
        if exc.code != "NOGROUP":
            raise exc
        if not await self._commands.call("EXISTS", self._keys.epoch):
            log.error("DATA LOSS: Redis lost its data (restarted without persistence, or flushed); tasks "
                      "queued or running before are gone and their waiters get ResultLost. Enable AOF.")
        else:
            log.warning("consumer group missing (queue deleted?); recreating it")
        await self._ensure_queues(self._queues)

    def lease_keeper(self) -> RedisLeaseKeeper:
        """A lease keeper with its own synchronous connection."""
        return RedisLeaseKeeper(self._target, self._keys, self.name)

    async def release(self) -> int:
        """Hand every delivery still pending for this consumer back to the tail of its queue:
        three round trips per queue (what is pending, which tasks, release.lua for each)."""
        released = 0
        for queue in self._queues:
            stream = self._keys.stream(queue)
            pending: Any = await self._commands.call("XPENDING", stream, GROUP, "-", "+", 10_000, self.name)
            entry_ids = [text(item[0]) for item in pending]
            if not entry_ids:
                continue
            ranges = await self._commands.call_many([("XRANGE", stream, e, e) for e in entry_ids])
            calls: list[tuple[Sequence[str], Sequence[str]]] = []
            for entry_id, reply in zip(entry_ids, ranges, strict=True):
                if isinstance(reply, ReplyError):
                    raise reply
                found = entries(reply)
                task_id = found[0][1].get(b"id", b"").decode() if found else ""
                calls.append(([self._keys.task(task_id), stream], [GROUP, self.name, entry_id, task_id]))
            for reply in await self._commands.run_scripts(self._release_script, calls):
                if isinstance(reply, ReplyError):
                    raise reply
                released += int(reply == 1)
        return released

    async def close(self) -> None:
        """Close the blocking connection."""
        if self._blocking is not None:
            await self._blocking.aclose()
            self._blocking = None
