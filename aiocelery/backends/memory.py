"""Result backend over a ``MemoryStore``, with the Redis backend's waiting semantics."""

from __future__ import annotations

from aiocelery.backends._wait import wait_for_record
from aiocelery.brokers.memory.store import Listener, MemoryStore
from aiocelery.wire.records import TaskRecord


class MemoryBackend:
    """Reads records from the store; ``wait`` wakes on the store's notifications."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def get_record(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``, or None."""
        return self.store.snapshot(task_id)

    async def wait(self, task_id: str, timeout: float | None, *, just_sent: bool = False) -> TaskRecord:
        """Wait for the final record (see ``wait_for_record``)."""
        listeners = self.store.listeners

        async def subscribe(listener: Listener) -> None:
            listeners.setdefault(task_id, []).append(listener)

        async def unsubscribe(listener: Listener) -> None:
            group = listeners.get(task_id, [])
            if listener in group:
                group.remove(listener)
            if not group:
                listeners.pop(task_id, None)

        return await wait_for_record(task_id, timeout, self.get_record, subscribe, unsubscribe,
                                     read_first=not just_sent)

    async def close(self) -> None:
        """Nothing to close."""
