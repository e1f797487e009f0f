"""Hooks: a class of no-op methods to subclass; tracing and metrics are built on it.

Register with ``app.add_hooks(MyHooks())``. Only the methods a subclass overrides are ever
called, so an app without hooks pays nothing, and a hook that raises is logged, never fatal.

    class Audit(Hooks):
        def on_failed(self, d: Delivery, error: ErrorInfo) -> None:
            audit_log.write(d.task_id, error.message)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiocelery.wire.message import TaskMessage
from aiocelery.wire.records import Delivery, ErrorInfo

if TYPE_CHECKING:
    from aiocelery.worker.worker import Worker

log = logging.getLogger("aiocelery.hooks")


class Hooks:
    """Subclass and override any of these; each is called synchronously on the event loop."""

    def on_publish(self, message: TaskMessage) -> None:
        """A task is about to be sent; ``message.headers`` may be written to (e.g. trace context)."""

    def on_received(self, d: Delivery) -> None:
        """A worker took a delivery."""

    def on_started(self, d: Delivery, headers: dict[str, str]) -> None:
        """A task starts running; ``headers`` are the ones ``on_publish`` wrote."""

    def on_succeeded(self, d: Delivery, runtime_s: float) -> None:
        """A task returned."""

    def on_retried(self, d: Delivery, error: ErrorInfo | None, countdown_s: float) -> None:
        """A task failed and will run again after ``countdown_s``."""

    def on_failed(self, d: Delivery, error: ErrorInfo | None) -> None:
        """A task failed for good."""

    def on_dead(self, d: Delivery, reason: str) -> None:
        """A task was dead-lettered."""

    def on_revoked(self, d: Delivery, reason: str) -> None:
        """A running task was revoked."""

    def on_released(self, d: Delivery, reason: str) -> None:
        """A delivery ended without an outcome: put back by a rate limit or concurrency cap,
        handed back at shutdown, or its lease was lost (another worker runs it)."""

    def on_worker_start(self, worker: Worker) -> None:
        """A worker is ready to consume."""

    def on_worker_stop(self, worker: Worker) -> None:
        """A worker stopped."""


HOOK_NAMES = tuple(n for n in vars(Hooks) if n.startswith("on_"))


class HookSet:
    """The registered hooks, indexed by the methods each one overrides."""

    def __init__(self) -> None:
        self._by_name: dict[str, list[Callable[..., Any]]] = {}

    def add(self, hooks: Hooks) -> None:
        """Register ``hooks``; only its overridden methods will be called."""
        for name in HOOK_NAMES:
            if getattr(type(hooks), name) is not getattr(Hooks, name):
                self._by_name.setdefault(name, []).append(getattr(hooks, name))

    def wants(self, name: str) -> bool:
        """True when some hook overrides ``name`` (lets callers skip building arguments)."""
        return name in self._by_name

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def call(self, name: str, *args: Any) -> None:
        """Call every ``name`` hook; one that raises is logged and the others still run."""
        for method in self._by_name.get(name, ()):
            try:
                method(*args)
            except Exception:
                log.exception("hook %s.%s failed (ignored)", type(getattr(method, "__self__", method)).__name__,
                              name)
