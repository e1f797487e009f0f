"""Operations for memory:// from the in-process store: queue numbers, purge, dead letters, workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiocelery import states
from aiocelery.brokers.memory.store import MemoryStore
from aiocelery.brokers.operations import QueueStats
from aiocelery.exceptions import DeadLetterError
from aiocelery.wire.records import DeadLetter


class MemoryOperations:
    """Operations for memory:// (one process): the same answers from the in-process store."""

    def __init__(self, store: MemoryStore) -> None:
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

    async def dead_letters(self, queue: str, count: int = 100) -> list[DeadLetter]:
        """The queue's dead letters, oldest first."""
        return [
            DeadLetter(entry_id=f["entry_id"], task_id=f["id"], name=f["name"], reason=f["reason"],
                       time_ms=int(f["time_ms"]), worker=f["worker"], error=f["error"])
            for f in self._store.dead.get(queue, [])[:count]
        ]

    async def requeue_dead(self, queue: str, entry_id: str) -> None:
        """Mirror of requeue.lua."""
        letters = self._store.dead.get(queue, [])
        letter = next((f for f in letters if f["entry_id"] == entry_id), None)
        if letter is None:
            raise DeadLetterError(f"no dead letter {entry_id} in queue {queue!r}: list them with "
                                  f"`python -m aiocelery dead list -A <app> -Q {queue}`")
        e = self._store.record(letter["id"])
        if e is None or e.state not in (states.DEAD, states.FAILURE):
            raise DeadLetterError(f"cannot requeue task {letter['id']} (dead letter {entry_id} of queue {queue!r}): "
                                  "its record is gone or not dead")
        e.state, e.crashes, e.reason, e.error, e.result, e.expires_at = states.PENDING, 0, "", None, None, None
        letters.remove(letter)
        self._store.add_ready(queue, e.task_id)

    async def purge_dead(self, queue: str) -> int:
        """Forget the queue's dead letters."""
        return len(self._store.dead.pop(queue, []))

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
