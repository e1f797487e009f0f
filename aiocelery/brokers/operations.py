"""Operator views and actions: queue depth, purge, the worker registry, control messages.

Kept apart from the delivery path: ``Admin`` is a separate protocol, implemented for Redis here
and for memory:// in ``MemoryAdmin``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from aiocelery import states
from aiocelery._redis.client import Client
from aiocelery._redis.pubsub import PubSubHub
from aiocelery._redis.replies import entries, fields, text
from aiocelery.brokers.redis.keys import GROUP, Keys


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's numbers."""

    queue: str
    waiting: int
    """Entries in the stream not yet handed to a worker."""
    running: int
    """Deliveries handed out and not settled (the consumer group's pending list)."""
    delayed: int
    dead: int
    oldest_waiting_s: float | None
    """Age of the oldest waiting entry (from its stream id), None when nothing waits."""


class Admin(Protocol):
    """What the CLI's operator commands need from a broker."""

    async def queue_stats(self, queue: str) -> QueueStats:
        """Counts for ``queue``."""
        ...

    async def purge(self, queue: str) -> int:
        """Drop every waiting and delayed task of ``queue`` (REVOKED "purged"); how many."""
        ...

    async def announce(self, worker_id: str, info: dict[str, Any], ttl_s: float) -> None:
        """Publish this worker's heartbeat record; it disappears ``ttl_s`` after the last one."""
        ...

    async def retire(self, worker_id: str) -> None:
        """Remove a stopping worker's record."""
        ...

    async def workers(self) -> list[dict[str, Any]]:
        """Every live worker's latest heartbeat record."""
        ...

    async def control(self, command: str, worker: str | None, timeout_s: float) -> list[dict[str, Any]]:
        """Broadcast ``command`` ("ping", "shutdown") to all workers or one; collect replies."""
        ...

    async def watch_control(self, on_command: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        """Answer control messages with ``on_command`` (None: no reply); runs until cancelled."""
        ...


class RedisAdmin:
    """Admin on the broker's Redis."""

    def __init__(self, client: Client, hub: PubSubHub, keys: Keys, ttl_ms: int) -> None:
        self._client = client
        self._hub = hub
        self._keys = keys
        self._ttl_ms = ttl_ms

    async def queue_stats(self, queue: str) -> QueueStats:
        """XINFO GROUPS (lag, pending), ZCARD, XLEN, and the oldest undelivered entry."""
        k = self._keys
        stream = k.stream(queue)
        running, last, lag = 0, "0-0", None
        with contextlib.suppress(Exception):  # no stream or no group yet: nothing delivered
            for g in await self._groups(stream):
                if text(g.get(b"name")) == GROUP:
                    running = int(g.get(b"pending") or 0)
                    last = text(g.get(b"last-delivered-id")) or "0-0"
                    lag = g.get(b"lag")
        # entries past the group's last delivered id wait; the stream holds only unsettled ones
        waiting = int(lag) if lag is not None else int(await self._client.call("XLEN", stream)) - running
        first = entries(await self._client.call("XRANGE", stream, f"({last}", "+", "COUNT", 1))
        oldest = max(0.0, time.time() - int(text(first[0][0]).split("-")[0]) / 1000) if first else None
        delayed = int(await self._client.call("ZCARD", k.delayed(queue)))
        dead = int(await self._client.call("XLEN", k.dead(queue)))
        return QueueStats(queue, waiting, running, delayed, dead, oldest)

    async def purge(self, queue: str) -> int:
        """Delete undelivered stream entries and the delayed set; their records become REVOKED."""
        k = self._keys
        stream = k.stream(queue)
        ids: list[tuple[str, str]] = []
        with contextlib.suppress(Exception):
            groups = await self._groups(stream)
            last = next((text(g.get(b"last-delivered-id")) for g in groups if text(g.get(b"name")) == GROUP),
                        "0-0")
            found = entries(await self._client.call("XRANGE", stream, f"({last}", "+"))
            ids = [(text(e), text(f.get(b"id", b""))) for e, f in found]
        delayed = [text(m) for m in await self._client.call("ZRANGE", k.delayed(queue), 0, -1)]
        commands: list[tuple[str | int, ...]] = [("XDEL", stream, entry) for entry, _ in ids]
        commands.append(("DEL", k.delayed(queue)))
        for task_id in [t for _, t in ids] + delayed:
            commands += [("HSET", k.task(task_id), "state", states.REVOKED, "reason", "purged"),
                         ("PEXPIRE", k.task(task_id), self._ttl_ms),
                         ("PUBLISH", k.done(task_id), states.REVOKED)]
        await self._client.call_many(commands)
        return len(ids) + len(delayed)

    async def _groups(self, stream: str) -> list[dict[bytes, Any]]:
        """XINFO GROUPS, each group's fields as a dict (raises when the stream does not exist)."""
        return [fields(g) for g in await self._client.call("XINFO", "GROUPS", stream)]

    async def announce(self, worker_id: str, info: dict[str, Any], ttl_s: float) -> None:
        """SET the record with a TTL and index it in a zset scored by expiry."""
        expires = int((time.time() + ttl_s) * 1000)
        await self._client.call_many([
            ("SET", self._keys.worker(worker_id), orjson.dumps(info), "PX", int(ttl_s * 1000)),
            ("ZADD", self._keys.workers, expires, worker_id)])

    async def retire(self, worker_id: str) -> None:
        """DEL the record and its index entry."""
        await self._client.call("DEL", self._keys.worker(worker_id))
        await self._client.call("ZREM", self._keys.workers, worker_id)

    async def workers(self) -> list[dict[str, Any]]:
        """Live records; expired index entries are dropped."""
        now = int(time.time() * 1000)
        await self._client.call("ZREMRANGEBYSCORE", self._keys.workers, "-inf", now)
        ids = [text(m) for m in await self._client.call("ZRANGE", self._keys.workers, 0, -1)]
        if not ids:
            return []
        raw: Any = await self._client.call("MGET", *[self._keys.worker(i) for i in ids])
        return [orjson.loads(r) for r in raw if r]

    async def control(self, command: str, worker: str | None, timeout_s: float) -> list[dict[str, Any]]:
        """PUBLISH on the control channel; replies come back on a one-off channel."""
        reply_to = f"{self._keys.prefix}:reply:{uuid.uuid4().hex}"
        replies: list[dict[str, Any]] = []

        def collect(data: bytes | None) -> None:
            if data:
                replies.append(orjson.loads(data))

        await self._hub.subscribe(reply_to, collect)
        try:
            message = {"command": command, "worker": worker, "reply_to": reply_to}
            await self._client.call("PUBLISH", self._keys.control, orjson.dumps(message))
            await asyncio.sleep(timeout_s)
        finally:
            await self._hub.unsubscribe(reply_to, collect)
        return replies

    async def watch_control(self, on_command: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        """Subscribe to the control channel and publish each reply."""
        pending: set[asyncio.Task[Any]] = set()

        def listener(data: bytes | None) -> None:
            if not data:
                return
            message = orjson.loads(data)
            reply = on_command(message)
            if reply is not None and message.get("reply_to"):
                task = asyncio.ensure_future(self._client.call("PUBLISH", message["reply_to"], orjson.dumps(reply)))
                pending.add(task)
                task.add_done_callback(pending.discard)

        await self._hub.subscribe(self._keys.control, listener)
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self._hub.unsubscribe(self._keys.control, listener))


class MemoryAdmin:
    """Admin for memory:// (one process): the same answers from the in-process store."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._workers: dict[str, tuple[float, dict[str, Any]]] = {}
        self._listeners: list[Callable[[dict[str, Any]], dict[str, Any] | None]] = []

    async def queue_stats(self, queue: str) -> QueueStats:
        """Counts from the store."""
        s = self._store
        return QueueStats(queue, len(s.ready.get(queue, ())), len(s.pending.get(queue, {})),
                          len(s.delayed.get(queue, ())), len(s.dead.get(queue, ())), None)

    async def purge(self, queue: str) -> int:
        """Drop ready and delayed tasks."""
        s = self._store
        ids = [t for _, t in s.ready.pop(queue, ())] + [t for _, t in s.delayed.pop(queue, [])]
        for task_id in ids:
            e = s.record(task_id)
            if e is not None:
                e.state, e.reason = states.REVOKED, "purged"
                s.notify(task_id, states.REVOKED)
        return len(ids)

    async def announce(self, worker_id: str, info: dict[str, Any], ttl_s: float) -> None:
        """Keep the record with its expiry."""
        self._workers[worker_id] = (time.monotonic() + ttl_s, info)

    async def retire(self, worker_id: str) -> None:
        """Forget the record."""
        self._workers.pop(worker_id, None)

    async def workers(self) -> list[dict[str, Any]]:
        """Unexpired records."""
        now = time.monotonic()
        return [info for expires, info in self._workers.values() if expires > now]

    async def control(self, command: str, worker: str | None, timeout_s: float) -> list[dict[str, Any]]:
        """Call every listener directly."""
        message = {"command": command, "worker": worker}
        return [r for r in (listener(message) for listener in list(self._listeners)) if r is not None]

    async def watch_control(self, on_command: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        """Register until cancelled."""
        self._listeners.append(on_command)
        try:
            await asyncio.Event().wait()
        finally:
            self._listeners.remove(on_command)


__all__: Sequence[str] = ("Admin", "MemoryAdmin", "QueueStats", "RedisAdmin")
