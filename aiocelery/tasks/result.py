"""``AsyncResult``: a handle on one task id, awaited without polling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from aiocelery import states
from aiocelery.backends.base import ResultBackend
from aiocelery.exceptions import AioCeleryError, BrokerError, ResultNotFound, TaskDead, TaskFailed, TaskRevoked
from aiocelery.wire.message import decode_value
from aiocelery.wire.records import TaskRecord

R = TypeVar("R")


class AsyncResult(Generic[R]):
    """The result of a sent task: ``await r.get(timeout=5)`` returns its value or raises."""

    __slots__ = ("_backend", "_just_sent", "_revoker", "id", "name")

    def __init__(self, task_id: str, backend: ResultBackend | Callable[[], ResultBackend], name: str = "",
                 revoker: Callable[[str, bool], Awaitable[str]] | None = None, *, just_sent: bool = False) -> None:
        self.id = task_id
        """The task id."""
        self.name = name
        """The task name when known locally ('' for a handle built from a bare id)."""
        self._backend = backend
        self._revoker = revoker
        self._just_sent = just_sent  # made by this process's send: the first get() need not read first

    def __repr__(self) -> str:
        return f"<AsyncResult {self.name or '?'}[{self.id}]>"

    def _resolve(self) -> ResultBackend:
        # an app passes a getter, so a handle kept past app.close() uses the app's new connections
        backend = self._backend
        return backend() if callable(backend) else backend

    async def record(self) -> TaskRecord:
        """The stored record (state, attempt, worker, times); ResultNotFound for an unknown id,
        BrokerError (the cause chained) when the result backend cannot be read."""
        try:
            record = await self._resolve().get_record(self.id)
        except AioCeleryError:
            raise
        except Exception as exc:  # the backend's own errors: connection loss, timeouts, error replies
            raise BrokerError(f"the record of task {self.id} could not be read: {type(exc).__name__}: "
                              f"{exc or 'timed out'}. Check that the result backend is reachable and try again.",
                              task_id=self.id) from exc
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
        just_sent, self._just_sent = self._just_sent, False
        value: R = outcome_of(await self._resolve().wait(self.id, timeout, just_sent=just_sent))
        return value


def outcome_of(record: TaskRecord) -> Any:
    """The value of a final record, or the aiocelery exception it stands for."""
    if record.state == states.SUCCESS:
        return decode_value(record.result) if record.result else None
    if record.state == states.FAILURE:
        err = record.error
        origin = err is not None and err.origin_id
        raise TaskFailed(
            task_id=err.origin_id if origin and err else record.id,
            task_name=err.origin_name if origin and err else record.name,
            exc_type=err.type if err else "Error",
            exc_message=err.message if err else "",
            remote_traceback=err.traceback if err else "",
        )
    if record.state == states.DEAD:
        raise TaskDead(task_id=record.id, task_name=record.name, reason=record.reason or "dead-lettered")
    raise TaskRevoked(task_id=record.id, task_name=record.name, reason=record.reason or "revoked")


class GroupResult:
    """The results of a group, in order: ``await g.get()``; ``await g.completed_count()``."""

    __slots__ = ("results",)

    def __init__(self, results: list[AsyncResult[Any]]) -> None:
        self.results = results
        """One AsyncResult per member, in the group's order."""

    def __repr__(self) -> str:
        return f"<GroupResult of {len(self.results)}>"

    def __len__(self) -> int:
        return len(self.results)

    @property
    def ids(self) -> list[str]:
        """The members' task ids (for a chain member: its last step's)."""
        return [r.id for r in self.results]

    async def get(self, timeout: float | None = None, *, raise_on_failure: bool = True) -> list[Any]:
        """Every member's value in order. ``raise_on_failure``: raise the first failure as soon as it
        happens; otherwise return every outcome, exceptions in place of failed members' values."""
        if not raise_on_failure:
            return list(await asyncio.gather(*(r.get(timeout) for r in self.results), return_exceptions=True))
        tasks = [asyncio.ensure_future(r.get(timeout)) for r in self.results]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
            return [t.result() for t in tasks]
        finally:
            for task in tasks:
                task.cancel()

    async def completed_count(self) -> int:
        """How many members succeeded so far."""
        states_ = await asyncio.gather(*(r.state() for r in self.results))
        return sum(1 for s in states_ if s == states.SUCCESS)

    async def ready(self) -> bool:
        """True once every member reached a final state."""
        return all(await asyncio.gather(*(r.ready() for r in self.results)))
