"""Run one delivery and say how it ended. Decides nothing about Redis: it returns a Settlement."""

from __future__ import annotations

import asyncio
import functools
import math
import traceback
from typing import Any

import anyio

from .. import states
from ..context import TaskContext, _current
from ..exceptions import EncodeError
from ..message import Payload, decode_payload, encode_value
from ..records import Delivery, ErrorInfo, Settlement
from ..registry import Registry
from ..task import Task
from .threads import DaemonThreadPool


class Executor:
    """Looks tasks up, binds arguments, runs ``async def`` on the loop and ``def`` in threads."""

    def __init__(self, registry: Registry, worker_name: str, threads: int) -> None:
        self._registry = registry
        self._worker = worker_name
        self.threads = DaemonThreadPool(threads)
        """The pool plain ``def`` tasks run in."""

    async def run(self, d: Delivery) -> Settlement:
        """Execute ``d`` and return its outcome; never raises for a task's own error."""
        found = self._resolve(d)
        if isinstance(found, Settlement):
            return found
        task, payload = found
        token = _current.set(TaskContext(d.task_id, d.name, d.queue, d.attempt, d.redelivered, self._worker))
        limit = task.options.time_limit_s
        try:
            with anyio.CancelScope(deadline=math.inf if limit is None else anyio.current_time() + limit) as scope:
                value = await self._call(task, payload.args, payload.kwargs)
            if scope.cancelled_caught:
                return _failure(d, "TimeLimitExceeded", f"task {d.name!r} (id {d.task_id}) ran past its time "
                                f"limit of {limit:g} s and was {'cancelled' if task.is_async else 'abandoned'}", "")
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the worker cancels this run (shutdown, lost lease): not the task's outcome
            return _failure(d, "CancelledError", str(exc) or "the task raised CancelledError",
                            traceback.format_exc())
        except (Exception, SystemExit) as exc:
            return _failure(d, type(exc).__qualname__, str(exc), traceback.format_exc())
        finally:
            _current.reset(token)
        try:
            return Settlement(states.SUCCESS, result=encode_value(value, f"the return value of task {d.name!r}"))
        except EncodeError as exc:
            return _failure(d, "EncodeError", f"task {d.name!r} (id {d.task_id}): {exc}", "")

    def _resolve(self, d: Delivery) -> tuple[Task[Any, Any], Payload] | Settlement:
        """The task and its decoded, bound arguments, or the terminal outcome explaining why not."""
        task = self._registry.get(d.name)
        if task is None:
            known = ", ".join(self._registry) or "none"
            return _dead(d, "NotRegistered", f"unknown task {d.name!r}: this worker registers {known}; "
                         "register it (app.task / app.register_tasks) and requeue the dead letter")
        try:
            payload = decode_payload(d.payload)
        except ValueError as exc:
            return _dead(d, "DecodeError", f"task {d.name!r} (id {d.task_id}) has an undecodable payload: {exc}")
        try:
            task.signature.bind(*payload.args, **payload.kwargs)
        except TypeError as exc:
            return _failure(d, "TaskArgumentsError",
                            f"task {d.name!r} (id {d.task_id}) got arguments that don't bind to "
                            f"{d.name}{task.signature}: {exc}; not retried", "")
        return task, payload

    async def _call(self, task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
        if task.is_async:
            return await task.fn(*args, **kwargs)
        # The pool copies the caller's contextvars into the thread, so current_task() works there.
        return await self.threads.run(functools.partial(task.fn, *args, **kwargs))


def _failure(d: Delivery, exc_type: str, message: str, tb: str) -> Settlement:
    return Settlement(states.FAILURE, error=ErrorInfo(exc_type, message, tb))


def _dead(d: Delivery, exc_type: str, reason: str) -> Settlement:
    return Settlement(states.DEAD, error=ErrorInfo(exc_type, reason, ""), reason=reason)
