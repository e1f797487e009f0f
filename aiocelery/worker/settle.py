"""Settle outcomes: store them through the broker, retrying through connection loss, and log."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Protocol

from aiocelery import states
from aiocelery.brokers.base import TRANSIENT_ERRORS, Broker
from aiocelery.tasks.hooks import HookSet
from aiocelery.timing.reconnect import ReconnectDelay
from aiocelery.wire.message import TaskMessage, decode_value
from aiocelery.wire.records import Delivery, ErrorInfo, Settlement
from aiocelery.wire.workflow import Headers, Spec, Wf, on_failure, on_success

log = logging.getLogger("aiocelery.worker")
SETTLE_RETRY_S = 60.0


class Counters(Protocol):
    """Where the settler counts outcomes (the Worker)."""

    processed: int
    failed: int


class Settler:
    """Stores each outcome once; keeps retrying an unreachable Redis for ``SETTLE_RETRY_S``."""

    def __init__(self, broker: Broker, counters: Counters, hooks: HookSet | None = None) -> None:
        self._broker = broker
        self._counters = counters
        self._hooks = hooks or HookSet()

    async def settle(self, d: Delivery, s: Settlement) -> None:
        """Store ``s`` for ``d`` (with what follows it in a workflow); log a failure or dead letter."""
        if d.workflow and s.state not in (states.RETRY, states.DEFER):
            s = with_workflow(d, s, self._child_headers if self._hooks.wants("on_publish") else None)
        self._counters.processed += 1
        if s.state == states.FAILURE:
            self._counters.failed += 1
            err = s.error
            log.error("task %s[%s] failed (attempt %d): %s: %s", d.name, d.task_id, d.attempt,
                      err.type if err else "?", err.message if err else "")
        elif s.state == states.DEAD:
            self._counters.failed += 1
            log.error("task %s[%s] dead-lettered: %s", d.name, d.task_id, s.reason)
        else:
            log.debug("task %s[%s] succeeded", d.name, d.task_id)
        stored = await self._store(d, s)
        if self._hooks and stored:
            self._announce(d, s)

    def _child_headers(self, spec: Spec) -> dict[str, str]:
        """Let ``on_publish`` hooks write the headers of a workflow step this task starts (so a
        trace continues through chains); called while the task's own context is current."""
        message = TaskMessage(id=spec.id, name=spec.name, args=spec.args, kwargs=spec.kwargs, queue=spec.queue)
        self._hooks.call("on_publish", message)
        return message.headers

    def _announce(self, d: Delivery, s: Settlement) -> None:
        if s.state == states.SUCCESS:
            self._hooks.call("on_succeeded", d, s.runtime_s)
        elif s.state == states.RETRY:
            self._hooks.call("on_retried", d, s.error, s.countdown_ms / 1000)
        elif s.state == states.FAILURE:
            self._hooks.call("on_failed", d, s.error)
        elif s.state == states.DEAD:
            self._hooks.call("on_dead", d, s.reason)
        elif s.state == states.REVOKED:
            self._hooks.call("on_revoked", d, s.reason)
        elif s.state == states.DEFER:
            self._hooks.call("on_released", d, "deferred by a rate limit or concurrency cap")

    async def _store(self, d: Delivery, s: Settlement) -> bool:
        try:
            return await self._broker.settle(d, s)
        except Exception as exc:
            return await self._store_again(d, s, exc)

    async def _store_again(self, d: Delivery, s: Settlement, exc: Exception) -> bool:
        """Retry storing through an outage (``exc``: the last failure) for ``SETTLE_RETRY_S``."""
        backoff = ReconnectDelay(cap=5.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_RETRY_S
        while True:  # connection loss above all; never let one outcome stop the worker
            if not isinstance(exc, TRANSIENT_ERRORS):
                log.error("unexpected error storing the outcome of task %s[%s]", d.name, d.task_id, exc_info=exc)
            if loop.time() >= deadline:
                log.error("could not store the outcome of task %s[%s] for %.0f s (%s); the delivery "
                          "stays pending and will run again", d.name, d.task_id, SETTLE_RETRY_S, exc)
                return False
            delay = backoff.next_delay()
            log.warning("storing the outcome of task %s[%s] failed (%s); retrying in %.2f s",
                        d.name, d.task_id, exc, delay)
            await asyncio.sleep(delay)
            try:
                return await self._broker.settle(d, s)
            except Exception as again:
                exc = again


def with_workflow(d: Delivery, s: Settlement, headers: Headers | None = None) -> Settlement:
    """``s`` plus the workflow steps its outcome starts: links and chord step on success;
    errbacks, failed later steps and a failed chord otherwise (their error names this task)."""
    wf = Wf.decode(d.workflow)
    h = headers or (lambda spec: {})
    if s.state == states.SUCCESS:
        return dataclasses.replace(s, workflow=on_success(wf, decode_value(s.result) if s.result else None, h))
    base = s.error or ErrorInfo(s.state, s.reason or s.state.lower(), "")
    error = dataclasses.replace(base, origin_id=d.task_id, origin_name=d.name)
    return dataclasses.replace(s, error=error, workflow=on_failure(wf, d.task_id, error, h))
