"""Operations on Redis: queue numbers, purge, dead letters, the worker registry, control messages."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import orjson

from aiocelery import states
from aiocelery._redis.client import Client
from aiocelery._redis.errors import RedisError
from aiocelery._redis.pubsub import PubSubHub
from aiocelery._redis.replies import entries, fields, text
from aiocelery.brokers.operations import QueueStats
from aiocelery.brokers.redis.keys import GROUP, Keys
from aiocelery.brokers.redis.scripts import load_script
from aiocelery.exceptions import BrokerError, DeadLetterError
from aiocelery.wire.records import DeadLetter, ErrorInfo

P = ParamSpec("P")
R = TypeVar("R")


def _wrapped(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Raise the client's errors (connection loss, timeouts, error replies) as ``BrokerError``,
    the cause chained: an operator call never shows users a bare Redis error."""
    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError, TimeoutError) as exc:
            raise BrokerError(f"{method.__name__.replace('_', ' ')} failed on Redis: {type(exc).__name__}: "
                              f"{exc or 'timed out'}. Check that Redis is reachable and try again.") from exc
    return call


class RedisOperations:
    """Operations on the broker's Redis."""

    def __init__(self, client: Client, hub: PubSubHub, keys: Keys, ttl_ms: int) -> None:
        self._client = client
        self._hub = hub
        self._keys = keys
        self._ttl_ms = ttl_ms
        self._requeue = load_script("requeue")

    @_wrapped
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

    @_wrapped
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

    @_wrapped
    async def dead_letters(self, queue: str, count: int = 100) -> list[DeadLetter]:
        """XRANGE of the queue's dead-letter stream."""
        reply = await self._client.call("XRANGE", self._keys.dead(queue), "-", "+", "COUNT", count)
        return [_dead_letter(entry_id, fields) for entry_id, fields in entries(reply)]

    @_wrapped
    async def requeue_dead(self, queue: str, entry_id: str) -> None:
        """requeue.lua: the task goes back to the stream with its id; its dead letter is removed."""
        found = entries(await self._client.call("XRANGE", self._keys.dead(queue), entry_id, entry_id))
        if not found:
            raise DeadLetterError(f"no dead letter {entry_id} in queue {queue!r}: list them with "
                                  f"`python -m aiocelery dead list -A <app> -Q {queue}`")
        task_id = found[0][1].get(b"id", b"").decode()
        ok, why = await self._client.run_script(
            self._requeue, [self._keys.task(task_id), self._keys.stream(queue), self._keys.dead(queue),
                            self._keys.delayed(queue)], [entry_id, task_id, self._keys.wake(queue)])
        if not int(ok):
            raise DeadLetterError(f"cannot requeue task {task_id} (dead letter {entry_id} of queue {queue!r}): "
                                  f"{why.decode()}")

    @_wrapped
    async def purge_dead(self, queue: str) -> int:
        """Delete the dead-letter stream."""
        key = self._keys.dead(queue)
        count = int(await self._client.call("XLEN", key))
        await self._client.call("DEL", key)
        return count

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

    @_wrapped
    async def workers(self) -> list[dict[str, Any]]:
        """Live records; expired index entries are dropped."""
        now = int(time.time() * 1000)
        await self._client.call("ZREMRANGEBYSCORE", self._keys.workers, "-inf", now)
        ids = [text(m) for m in await self._client.call("ZRANGE", self._keys.workers, 0, -1)]
        if not ids:
            return []
        raw: Any = await self._client.call("MGET", *[self._keys.worker(i) for i in ids])
        return [orjson.loads(r) for r in raw if r]

    @_wrapped
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


def _dead_letter(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode()

    error = text("error")
    return DeadLetter(entry_id=entry_id.decode(), task_id=text("id"), name=text("name"), reason=text("reason"),
                      time_ms=int(text("time_ms") or 0), worker=text("worker"),
                      error=ErrorInfo.from_json(orjson.loads(error)) if error else None)
