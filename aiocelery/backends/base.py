"""The result backend protocol: read a task's record, and wait until it is final."""

from __future__ import annotations

from typing import Protocol

from aiocelery.wire.records import TaskRecord


class ResultBackend(Protocol):
    """Where task state and results are read; the broker writes them when it settles."""

    async def get_record(self, task_id: str) -> TaskRecord | None:
        """The current record, or None when the id is unknown (never sent, or expired)."""
        ...

    async def wait(self, task_id: str, timeout: float | None, *, just_sent: bool = False) -> TaskRecord:
        """Return the record once it is final; ResultNotFound / ResultTimeout / ResultLost otherwise.
        ``just_sent``: this process sent it a moment ago, so it is most likely not done: subscribe
        before the first read (one round trip fewer)."""
        ...

    async def close(self) -> None:
        """Release connections and wake nobody further."""
        ...
