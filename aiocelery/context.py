"""The running task's context, readable from inside any task (async or thread)."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Who is running: the task's id, name, queue, attempt number and worker."""

    id: str
    name: str
    queue: str
    attempt: int
    redelivered: bool
    """True when an earlier delivery of this task was handed out before (a retry or a crash)."""
    worker: str
    retries: int = 0
    """Retries done before this run."""
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def cancel_requested(self) -> bool:
        """True once the task was revoked with ``terminate=True``: a thread task should stop soon."""
        return self.cancel_event.is_set()


_current: ContextVar[TaskContext | None] = ContextVar("aiocelery_current_task", default=None)


def current_task() -> TaskContext | None:
    """The context of the task running in this coroutine or thread, or None outside a task."""
    return _current.get()
