"""Result backend on Redis: reads the task record, waits on one shared pub/sub connection."""

from __future__ import annotations

from typing import Any

from aiocelery._redis.client import Client
from aiocelery._redis.pubsub import Listener, PubSubHub
from aiocelery.backends._wait import wait_for_record
from aiocelery.brokers.redis.keys import Keys
from aiocelery.wire.message import decode_value
from aiocelery.wire.records import ErrorInfo, TaskRecord

_FIELDS = ("name", "queue", "state", "attempt", "result", "error", "reason", "worker",
           "created_ms", "started_ms", "done_ms")


class RedisBackend:
    """Task records from the broker's Redis; ``wait`` wakes on ``<prefix>:done:<id>``."""

    def __init__(self, client: Client, hub: PubSubHub, keys: Keys) -> None:
        self._client = client
        self._hub = hub
        self._keys = keys

    async def get_record(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``, or None when Redis has none."""
        values: Any = await self._client.call("HMGET", self._keys.task(task_id), *_FIELDS)
        return _to_record(task_id, values)

    async def wait(self, task_id: str, timeout: float | None, *, just_sent: bool = False) -> TaskRecord:
        """Wait for the final record (see ``wait_for_record``)."""
        channel = self._keys.done(task_id)

        async def subscribe(listener: Listener) -> None:
            await self._hub.subscribe(channel, listener)

        async def unsubscribe(listener: Listener) -> None:
            await self._hub.unsubscribe(channel, listener)

        return await wait_for_record(task_id, timeout, self.get_record, subscribe, unsubscribe,
                                     read_first=not just_sent, carried=record_from_notice)

    async def close(self) -> None:
        """The app closes the shared client and hub."""


def record_from_notice(task_id: str, data: bytes) -> TaskRecord | None:
    """The final record settle.lua published on ``<prefix>:done:<id>``: ``\\x01``, then ``state
    attempt created started done`` and the lengths of name, queue, worker, reason and error, a
    newline, those five, and the result (the rest). None for any other message (a bare state,
    published by revoke, purge or for a large result): the waiter reads the record then."""
    if not data.startswith(b"\x01"):
        return None
    head, _, body = data[1:].partition(b"\n")
    fields = head.split(b" ")
    if len(fields) != 10:
        return None
    state, attempt, created, started, done = (f.decode() for f in fields[:5])
    parts, at = [], 0
    for length in fields[5:]:
        parts.append(body[at:at + int(length)])
        at += int(length)
    name, queue, worker, reason, error = parts
    result = body[at:]
    return TaskRecord(id=task_id, name=name.decode(), queue=queue.decode(), state=state, attempt=int(attempt),
                      result=result or None, error=ErrorInfo.from_json(decode_value(error)) if error else None,
                      reason=reason.decode(), worker=worker.decode(), created_ms=int(created),
                      started_ms=int(started), done_ms=int(done))


def _to_record(task_id: str, values: list[bytes | None]) -> TaskRecord | None:
    name, queue, state, attempt, result, error, reason, worker, created, started, done = values
    if state is None:
        return None
    return TaskRecord(
        id=task_id,
        name=(name or b"").decode(),
        queue=(queue or b"").decode(),
        state=state.decode(),
        attempt=int(attempt or 0),
        result=result or None,
        error=ErrorInfo.from_json(decode_value(error)) if error else None,
        reason=(reason or b"").decode(),
        worker=(worker or b"").decode(),
        created_ms=int(created or 0),
        started_ms=int(started or 0),
        done_ms=int(done or 0),
    )
