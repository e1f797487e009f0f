"""The operations protocol: what operator tools (the CLI, the dashboard, metrics) need from a broker.

Kept apart from the delivery path (``brokers/base.py``): a broker implements ``Broker`` to carry
tasks and ``Operations`` to be inspected and managed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiocelery.wire.records import DeadLetter


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


class Operations(Protocol):
    """What operators need from a broker: queue numbers, purge, dead letters, and the worker
    registry and control channel (heartbeats, ping, shutdown). Separate from ``Broker`` so the
    delivery path depends on none of it; every broker provides both (``connections.py``)."""

    async def queue_stats(self, queue: str) -> QueueStats:
        """Counts for ``queue``."""
        ...

    async def purge(self, queue: str) -> int:
        """Drop every waiting and delayed task of ``queue`` (REVOKED "purged"); how many."""
        ...

    async def dead_letters(self, queue: str, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of ``queue``."""
        ...

    async def requeue_dead(self, queue: str, entry_id: str) -> None:
        """Send a dead-lettered task back to its queue with the same id; DeadLetterError says why not."""
        ...

    async def purge_dead(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; returns how many."""
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
