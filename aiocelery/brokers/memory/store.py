"""The in-process store a ``memory://`` app keeps: what Redis holds for the Redis broker.

Task records, per-queue ready lists, pending deliveries owned by a consumer, a delayed heap, dead
letters, dedup keys, chord state and the done listeners. The broker, its operations and the memory
result backend share one store.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiocelery import states
from aiocelery.timing.clock import Clock, SystemClock
from aiocelery.wire.records import ErrorInfo, TaskRecord
from aiocelery.wire.workflow import ChordInit

Listener = Callable[[bytes | None], None]
"""Called with a task's new terminal state (its done channel)."""


@dataclass(slots=True)
class Entry:
    """One task's record (the Redis broker's task hash)."""


    task_id: str
    name: str
    queue: str
    payload: bytes
    state: str = states.PENDING
    attempt: int = 0
    crashes: int = 0
    result: bytes | None = None
    error: ErrorInfo | None = None
    reason: str = ""
    worker: str = ""
    created_ms: int = 0
    started_ms: int = 0
    done_ms: int = 0
    expires_at: float | None = None
    """When the record itself goes away (the result TTL)."""
    revoked: str = ""
    task_expires_ms: int | None = None
    """When the task expires unstarted (``expires=``)."""
    retries: int = 0
    deferrals: int = 0
    wf: bytes = b""
    placeholder: bool = False


@dataclass(slots=True)
class ChordState:
    """A chord's counter and member results."""

    init: ChordInit
    results: dict[int, bytes] = field(default_factory=dict)
    failed: str = ""


@dataclass(slots=True)
class PendingDelivery:
    """A delivery handed to a consumer and not settled."""

    task_id: str
    consumer: str
    deliveries: int


@dataclass(slots=True)
class MemoryStore:
    """Everything a ``memory://`` app keeps; shared by its broker and backend."""

    records: dict[str, Entry] = field(default_factory=dict)
    ready: dict[str, deque[tuple[str, str]]] = field(default_factory=dict)
    pending: dict[str, dict[str, PendingDelivery]] = field(default_factory=dict)
    delayed: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    dead: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dedup: dict[str, tuple[str, float]] = field(default_factory=dict)
    revoke_listeners: list[Callable[[str], None]] = field(default_factory=list)
    fired: dict[str, int] = field(default_factory=dict)
    chords: dict[str, ChordState] = field(default_factory=dict)
    clock: Clock = field(default_factory=SystemClock)
    listeners: dict[str, list[Listener]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    delayed_changed: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def record(self, task_id: str) -> Entry | None:
        """The live record of ``task_id`` (expired ones are dropped on read)."""
        entry = self.records.get(task_id)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= time.monotonic():
            del self.records[task_id]
            return None
        return entry

    def add_ready(self, queue: str, task_id: str) -> None:
        """XADD: append a delivery for ``task_id``."""
        self.ready.setdefault(queue, deque()).append((f"{next(self._ids)}-0", task_id))
        self.changed.set()

    def notify(self, task_id: str, state: str) -> None:
        """PUBLISH on the task's done channel."""
        for listener in list(self.listeners.get(task_id, ())):
            listener(state.encode())

    def snapshot(self, task_id: str) -> TaskRecord | None:
        """The record as the backend reports it."""
        e = self.record(task_id)
        if e is None:
            return None
        return TaskRecord(id=e.task_id, name=e.name, queue=e.queue, state=e.state, attempt=e.attempt,
                          result=e.result, error=e.error, reason=e.reason, worker=e.worker,
                          created_ms=e.created_ms, started_ms=e.started_ms, done_ms=e.done_ms)


