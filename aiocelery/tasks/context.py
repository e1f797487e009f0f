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
    _cancel: _CancelRequest = field(default_factory=lambda: _CancelRequest(), repr=False, compare=False)

    @property
    def cancel_requested(self) -> bool:
        """True once the task was revoked with ``terminate=True``: a thread task should stop soon."""
        return self._cancel.requested

    @property
    def cancel_event(self) -> threading.Event:
        """Set when the task is revoked with ``terminate=True`` (``wait()`` on it from a thread task)."""
        return self._cancel.event()

    def request_cancel(self) -> None:
        """Ask the task to stop (the worker calls this on revoke with terminate)."""
        self._cancel.set()


class _CancelRequest:
    """A cancel flag whose ``threading.Event`` is made only if someone asks for it (most runs never do)."""

    __slots__ = ("_event", "requested")
    _lock = threading.Lock()  # guards only the lazy creation; shared by every instance

    def __init__(self) -> None:
        self.requested = False
        self._event: threading.Event | None = None

    def event(self) -> threading.Event:
        with self._lock:
            if self._event is None:
                self._event = threading.Event()
                if self.requested:
                    self._event.set()
            return self._event

    def set(self) -> None:
        with self._lock:
            self.requested = True
            if self._event is not None:
                self._event.set()


_current: ContextVar[TaskContext | None] = ContextVar("aiocelery_current_task", default=None)


def current_task() -> TaskContext | None:
    """The context of the task running in this coroutine or thread, or None outside a task."""
    return _current.get()
