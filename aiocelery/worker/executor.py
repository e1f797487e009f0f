"""Run one delivery and say how it ended. Knows no broker: it returns a Settlement.

The path: resolve (task known? payload decodes? arguments bind?) -> admit (rate limit and
concurrency cap, else DEFER) -> run (async on the loop, def in the thread pool, with soft and
hard time limits) -> outcome (SUCCESS, or the retry policy's RETRY / FAILURE).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
import time
import traceback
from typing import Any

from aiocelery import states
from aiocelery.brokers.admission import CAP_FULL, Admission, Limiter
from aiocelery.exceptions import EncodeError, Retry, TimeLimitExceeded
from aiocelery.tasks.context import TaskContext, _current
from aiocelery.tasks.hooks import HookSet
from aiocelery.tasks.registry import Registry
from aiocelery.tasks.task import Task
from aiocelery.timing.retry import decide
from aiocelery.wire.message import Payload, decode_payload, encode_value
from aiocelery.wire.records import Delivery, ErrorInfo, Settlement
from aiocelery.worker.scope import RunScope
from aiocelery.worker.soft_limit import run_with_soft_limit
from aiocelery.worker.threads import DaemonThreadPool

CAP_RETRY_MS = 250
"""How long a start refused by a full concurrency cap waits before it is tried again (jittered)."""

log = logging.getLogger("aiocelery.worker")


class Executor:
    """Looks tasks up, binds arguments, admits, runs, and turns the result into a Settlement."""

    def __init__(self, registry: Registry, worker_name: str, threads: int, limiter: Limiter,
                 slot_ttl_s: float, hooks: HookSet | None = None) -> None:
        self._registry = registry
        self._hooks = hooks or HookSet()
        self._worker = worker_name
        self._limiter = limiter
        self._slot_ttl_s = slot_ttl_s
        self.threads = DaemonThreadPool(threads)
        """The pool plain ``def`` tasks run in."""

    async def run(self, d: Delivery, ctx: TaskContext | None = None) -> Settlement:
        """Execute ``d`` and return its outcome; never raises for a task's own error."""
        found = self._resolve(d)
        if isinstance(found, Settlement):
            return found
        task, payload = found
        admission = self._admission(task, d, payload)
        if admission is not None:
            wait_ms = await self._limiter.admit(admission)
            if wait_ms != 0:
                jitter = random.randint(0, CAP_RETRY_MS)
                return Settlement(states.DEFER, countdown_ms=CAP_RETRY_MS + jitter if wait_ms == CAP_FULL else wait_ms)
        capped = admission is not None and admission.capped
        keeper = None
        if admission is not None and capped:
            keeper = asyncio.get_running_loop().create_task(self._keep_slot(d, admission))
        token = _current.set(ctx or self.context(d))
        if self._hooks.wants("on_started"):
            self._hooks.call("on_started", d, payload.headers)
        started = time.perf_counter()
        try:
            settlement = await self._execute(task, d, payload)
            return settlement.timed(time.perf_counter() - started)
        finally:
            _current.reset(token)
            if admission is not None and capped:
                await asyncio.shield(self._release_slot(admission, keeper))

    async def _release_slot(self, admission: Admission, keeper: asyncio.Task[None] | None) -> None:
        if keeper is not None:
            keeper.cancel()
            await asyncio.wait([keeper])  # a renewal in flight goes before the release, not after it
        await self._limiter.release(admission)

    async def _keep_slot(self, d: Delivery, slot: Admission) -> None:
        """While a capped task runs, push its slot's deadline out every third of the slot's TTL:
        a run longer than the TTL keeps its place under the cap (the deadline is only there to free
        the slot of a worker that died). Admitting the same task id again renews its slot; the
        renewal books nothing against a rate limit."""
        renewal = dataclasses.replace(slot, rate=None)
        while True:
            await asyncio.sleep(slot.slot_ttl_ms / 3000)
            try:
                if await self._limiter.admit(renewal) == CAP_FULL:
                    log.warning("task %s (id %s) lost its concurrency slot under %r (its deadline passed while "
                                "the slot could not be renewed, and others took it): it runs on over the cap "
                                "of %d", d.name, d.task_id, slot.concurrency_value, slot.limit)
            except Exception as exc:  # Redis unreachable: try again next time (a slot outlives two misses)
                log.warning("could not renew the concurrency slot of task %s (id %s): %s: %s", d.name, d.task_id,
                            type(exc).__name__, exc)

    def context(self, d: Delivery) -> TaskContext:
        """The context a run of ``d`` sees through ``current_task()``."""
        return TaskContext(d.task_id, d.name, d.queue, d.run_number, d.redelivered, self._worker, d.retries)

    def _resolve(self, d: Delivery) -> tuple[Task[Any, Any], Payload] | Settlement:
        """The task and its decoded, bound arguments, or the terminal outcome explaining why not."""
        task = self._registry.get(d.name)
        if task is None:
            known = ", ".join(self._registry) or "none"
            return _dead(f"unknown task {d.name!r}: this worker registers {known}; "
                         "register it (app.task / app.register_tasks) and requeue the dead letter", "NotRegistered")
        try:
            payload = decode_payload(d.payload)
        except ValueError as exc:
            return _dead(f"task {d.name!r} (id {d.task_id}) has an undecodable payload: {exc}", "DecodeError")
        if not task.binds(payload.args, payload.kwargs):
            try:
                task.signature.bind(*payload.args, **payload.kwargs)
            except TypeError as exc:
                return _failure("TaskArgumentsError", f"task {d.name!r} (id {d.task_id}) got arguments that "
                                f"don't bind to {d.name}{task.signature}: {exc}; not retried", "")
        return task, payload

    def _admission(self, task: Task[Any, Any], d: Delivery, payload: Payload) -> Admission | None:
        opts = task.options
        if opts.rate_limit is None and opts.concurrency_limit is None:
            return None
        value = None
        if opts.concurrency_key is not None and opts.concurrency_limit is not None:
            value = _concurrency_value(task, payload)
        ttl_s = max(self._slot_ttl_s, (opts.time_limit_s or 0) + self._slot_ttl_s / 3)
        return Admission(task_id=d.task_id, task_name=task.name, rate=opts.rate_limit, concurrency_value=value,
                         limit=opts.concurrency_limit or 0, slot_ttl_ms=int(ttl_s * 1000))

    async def _execute(self, task: Task[Any, Any], d: Delivery, payload: Payload) -> Settlement:
        limit = task.options.time_limit_s
        try:
            if limit is None:
                value = await self._call(task, d, payload)
            else:
                with RunScope(asyncio.get_running_loop().time() + limit) as scope:
                    value = await self._call(task, d, payload)
            if limit is not None and scope.cancelled_caught:
                how = "cancelled" if task.is_async else "abandoned"
                exc = TimeLimitExceeded(f"task {d.name!r} (id {d.task_id}) ran past its time limit of {limit:g} s "
                                        f"and was {how}")
                return self._after_error(task, d, exc, "")
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the worker cancels this run (shutdown, lost lease, revoke): not the task's outcome
            return self._after_error(task, d, exc, traceback.format_exc())
        except Retry as retry:
            return self._retry(task, d, retry, traceback.format_exc())
        except (Exception, SystemExit) as exc:
            return self._after_error(task, d, exc, traceback.format_exc())
        try:
            return Settlement(states.SUCCESS, result=encode_value(value, f"the return value of task {d.name!r}"))
        except EncodeError as exc:
            return _failure("EncodeError", f"task {d.name!r} (id {d.task_id}): {exc}", "")

    async def _call(self, task: Task[Any, Any], d: Delivery, payload: Payload) -> Any:
        soft = task.options.soft_time_limit_s
        if task.is_async:
            coro = task.fn(*payload.args, **payload.kwargs)
            if soft is None:
                return await coro
            return await run_with_soft_limit(coro, soft, f"task {d.name!r} (id {d.task_id})")
        # The pool copies the caller's contextvars into the thread, so current_task() works there.
        return await self.threads.run(functools.partial(task.fn, *payload.args, **payload.kwargs), soft)

    def _retry(self, task: Task[Any, Any], d: Delivery, retry: Retry, tb: str) -> Settlement:
        cause = retry.exc or retry
        decision = decide(task.options.retry, d.retries, cause, explicit=True, explicit_countdown=retry.countdown)
        error = _error_info(cause, tb)
        if decision.retry:
            return Settlement(states.RETRY, error=error, countdown_ms=int(decision.countdown_s * 1000))
        return Settlement(states.FAILURE, error=error, dead_letter=True,
                          reason=f"gave up after {d.retries} retries (max_retries {task.options.retry.max_retries})")

    def _after_error(self, task: Task[Any, Any], d: Delivery, exc: BaseException, tb: str) -> Settlement:
        policy = task.options.retry
        decision = decide(policy, d.retries, exc)
        error = _error_info(exc, tb)
        if decision.retry:
            return Settlement(states.RETRY, error=error, countdown_ms=int(decision.countdown_s * 1000))
        exhausted = policy.wants(exc) and d.retries >= policy.max_retries
        reason = f"gave up after {d.retries} retries (max_retries {policy.max_retries})" if exhausted else ""
        return Settlement(states.FAILURE, error=error, dead_letter=exhausted, reason=reason)


def _concurrency_value(task: Task[Any, Any], payload: Payload) -> str:
    key = task.options.concurrency_key
    if callable(key):
        return str(key(*payload.args, **payload.kwargs))
    bound = task.signature.bind(*payload.args, **payload.kwargs)
    bound.apply_defaults()
    return str(bound.arguments.get(str(key), ""))


def _error_info(exc: BaseException, tb: str) -> ErrorInfo:
    return ErrorInfo(type(exc).__qualname__, str(exc) or type(exc).__name__, tb)


def _failure(exc_type: str, message: str, tb: str) -> Settlement:
    return Settlement(states.FAILURE, error=ErrorInfo(exc_type, message, tb))


def _dead(reason: str, exc_type: str) -> Settlement:
    return Settlement(states.DEAD, error=ErrorInfo(exc_type, reason, ""), reason=reason)
