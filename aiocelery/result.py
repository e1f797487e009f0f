"""``AsyncResult``: a handle on one task id, awaited without polling."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from . import states
from .backends.base import ResultBackend
from .exceptions import ResultNotFound, TaskDead, TaskFailed, TaskRevoked
from .message import decode_value
from .records import TaskRecord

R = TypeVar("R")


class AsyncResult(Generic[R]):
    """The result of a sent task: ``await r.get(timeout=5)`` returns its value or raises."""

    __slots__ = ("_backend", "_revoker", "id", "name")

    def __init__(self, task_id: str, backend: ResultBackend | Callable[[], ResultBackend], name: str = "",
                 revoker: Callable[[str, bool], Awaitable[str]] | None = None) -> None:
        self.id = task_id
        """The task id."""
        self.name = name
        """The task name when known locally ('' for a handle built from a bare id)."""
        self._backend = backend
        self._revoker = revoker

    def __repr__(self) -> str:
        return f"<AsyncResult {self.name or '?'}[{self.id}]>"

    def _resolve(self) -> ResultBackend:
        # an app passes a getter, so a handle kept past app.close() uses the app's new connections
        backend = self._backend
        return backend() if callable(backend) else backend

    async def record(self) -> TaskRecord:
        """The stored record (state, attempt, worker, times); ResultNotFound for an unknown id."""
        record = await self._resolve().get_record(self.id)
        if record is None:
            raise ResultNotFound(self.id)
        return record

    async def state(self) -> str:
        """The current state: PENDING, STARTED, RETRY, SUCCESS, FAILURE, DEAD or REVOKED."""
        return (await self.record()).state

    async def ready(self) -> bool:
        """True once the task reached a final state."""
        return (await self.record()).state in states.READY_STATES

    async def revoke(self, terminate: bool = False) -> str:
        """Revoke the task (see ``App.revoke``); returns its state afterwards."""
        if self._revoker is None:
            raise TypeError("this AsyncResult was built without an app; use app.revoke(task_id)")
        return await self._revoker(self.id, terminate)

    async def get(self, timeout: float | None = None) -> R:
        """Wait for the task and return its value; raise its error if it failed.

        Raises TaskFailed (with the remote traceback), TaskDead, TaskRevoked, ResultNotFound for
        an id that was never sent, and ResultTimeout when ``timeout`` seconds pass first.
        """
        value: R = outcome_of(await self._resolve().wait(self.id, timeout))
        return value


def outcome_of(record: TaskRecord) -> Any:
    """The value of a final record, or the aiocelery exception it stands for."""
    if record.state == states.SUCCESS:
        return decode_value(record.result) if record.result else None
    if record.state == states.FAILURE:
        err = record.error
        raise TaskFailed(
            task_id=record.id,
            task_name=record.name,
            exc_type=err.type if err else "Error",
            exc_message=err.message if err else "",
            remote_traceback=err.traceback if err else "",
        )
    if record.state == states.DEAD:
        raise TaskDead(task_id=record.id, task_name=record.name, reason=record.reason or "dead-lettered")
    raise TaskRevoked(task_id=record.id, task_name=record.name, reason=record.reason or "revoked")
