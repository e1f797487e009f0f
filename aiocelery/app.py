"""``App``: tasks, configuration, connections and sending, composed in one object (no globals)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, Unpack, overload

from aiocelery.backends.base import ResultBackend
from aiocelery.brokers.base import Broker, Outgoing, Published
from aiocelery.config import Config, redact_url
from aiocelery.connections import Connections, connect
from aiocelery.exceptions import BrokerError, ConfigError, EncodeError, ResultNotFound, SendError, TaskArgumentsError
from aiocelery.tasks.canvas import Plan
from aiocelery.tasks.hooks import Hooks, HookSet
from aiocelery.tasks.options import TaskOptionArgs, build_options
from aiocelery.tasks.periodic import PeriodicEntry, make_entry, make_schedule
from aiocelery.tasks.registry import Registry
from aiocelery.tasks.result import AsyncResult
from aiocelery.tasks.signature import Signature
from aiocelery.tasks.task import NO_OPTIONS, SendOptions, Task, TaskOptions
from aiocelery.timing.clock import Clock
from aiocelery.timing.schedule import Schedule
from aiocelery.wire.ids import new_id
from aiocelery.wire.message import TaskMessage

if TYPE_CHECKING:
    from aiocelery.worker.worker import Worker

P = ParamSpec("P")
R = TypeVar("R")
MAX_CHECKED_QUEUES = 1024
"""Queue names remembered as valid per app (each is checked once, not on every send)."""


class App:
    """An aiocelery application: ``App(Config(broker=...))`` (Machinery's NewServer)."""

    def __init__(self, config: Config | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or Config()
        """The frozen configuration."""
        self.registry = Registry()
        """Registered tasks by name."""
        self.hooks = HookSet()
        """Registered hooks (``add_hooks``): tracing, metrics, your own."""
        self.periodic_entries: list[PeriodicEntry] = []
        """Periodic tasks, sent by the scheduler in every worker and by ``python -m aiocelery beat``."""
        self._clock = clock
        self._conn: Connections | None = None
        self._checked_queues: set[str] = set()

    def __repr__(self) -> str:
        return f"<App broker={redact_url(self.config.broker)} tasks={len(self.registry)}>"

    # -- declaring tasks -------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(self, /, **options: Unpack[TaskOptionArgs]) -> TaskDecorator: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Unpack[TaskOptionArgs]) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., max_retries=..., ...)``.

        Options: ``name``, ``queue``; retries: ``max_retries`` (3), ``retry_backoff``
        ("fixed" | "exponential" | "fibonacci"), ``retry_backoff_s`` (1), ``retry_backoff_max_s``
        (600), ``retry_jitter`` (True), ``autoretry_for``, ``dont_autoretry_for``; limits:
        ``time_limit_s``, ``soft_time_limit_s``, ``rate_limit`` ("100/s") and ``rate_burst``,
        ``concurrency_key`` + ``concurrency_limit``.
        """
        decorator = TaskDecorator(self, build_options(options))
        return decorator if fn is None else decorator(fn)

    def periodic(self, cron: str | Schedule | None = None, /, *, every: timedelta | None = None,
                 tz: str | None = None, missed: str = "latest",
                 args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                 **options: Unpack[TaskOptionArgs]) -> TaskDecorator:
        """Register a task and run it on a schedule: ``@app.periodic("*/5 * * * *", tz="Europe/Paris")``
        or ``@app.periodic(every=timedelta(seconds=30))``. ``missed``: what to do about fire times
        no scheduler was up for: "latest" (run the most recent once), "all", or "skip". Other
        keywords are ``@app.task``'s; the entry is named after the task."""
        schedule = make_schedule(cron, every, tz)

        def on_register(task: Task[..., Any]) -> None:
            signature = Signature(task.name, args=args, kwargs=kwargs or {}, queue=task.options.queue)
            self.periodic_entries.append(make_entry(task.name, schedule, signature, missed))

        return TaskDecorator(self, build_options(options, "@app.periodic"), on_register)

    def add_periodic(self, schedule: str | timedelta | Schedule, signature: Signature, *, name: str | None = None,
                     tz: str | None = None, missed: str = "latest") -> PeriodicEntry:
        """Send ``signature`` on ``schedule`` (a cron string, a timedelta or a Schedule)."""
        entry = make_entry(name or signature.name, make_schedule(schedule, None, tz), signature, missed)
        self.periodic_entries.append(entry)
        return entry

    def add_hooks(self, hooks: Hooks) -> None:
        """Register a ``Hooks`` subclass instance; only the methods it overrides are called."""
        self.hooks.add(hooks)

    def register_tasks(self, tasks: Mapping[str, Callable[..., Any]]) -> dict[str, Task[..., Any]]:
        """Register several functions under the given names (Machinery's RegisterTasks)."""
        return {name: self._register(fn, TaskOptions(name=name)) for name, fn in tasks.items()}

    def _register(self, fn: Callable[..., Any], options: TaskOptions) -> Task[..., Any]:
        if not callable(fn):
            raise TypeError(f"task {options.name!r}: {fn!r} is not callable")
        name = options.name or f"{fn.__module__}.{fn.__qualname__}"
        task: Task[..., Any] = Task(fn, name, options, self)
        self.registry.add(task)
        return task

    # -- sending ---------------------------------------------------------------------------

    async def send_task(
        self,
        sig: str | Signature,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        expires: float | datetime | None = None,
        dedup_key: str | None = None,
        dedup_ttl_s: float = 3600.0,
    ) -> AsyncResult[Any]:
        """Send a task by name or Signature, even one this process has not registered (SendTask).

        Options as for ``Task.apply_async``.
        """
        options = SendOptions(countdown=countdown, eta=eta, queue=queue, task_id=task_id, expires=expires,
                              dedup_key=dedup_key, dedup_ttl_s=dedup_ttl_s)
        if isinstance(sig, Signature):
            task_id = task_id or sig.task_id or new_id()
            try:
                sig_args, sig_kwargs = sig.resolved()
            except TypeError as exc:
                raise TaskArgumentsError(f"{exc} (task id {task_id}); nothing was sent") from None
            options = dataclasses.replace(options, countdown=countdown if countdown is not None else sig.countdown,
                                          eta=eta or sig.eta, queue=queue or sig.queue, task_id=task_id)
            return await self._send(sig.name, [*sig_args, *(args or ())], {**sig_kwargs, **(kwargs or {})}, options)
        return await self._send(sig, args or (), kwargs or {}, options)

    async def send_many(self, signatures: Sequence[Signature], *, chunk: int = 1000) -> list[AsyncResult[Any]]:
        """Send many tasks in pipelined round trips of ``chunk`` (two in flight, so Redis works on
        one while the replies of the other are read); all are validated before any is sent.
        Signatures with links or errbacks are sent as a ``group`` (the workflow path)."""
        if any(sig.links or sig.errbacks for sig in signatures):
            from aiocelery.tasks.canvas import group  # canvas builds on the app

            return (await group(*signatures).apply_async(self)).results
        outgoing = [self._outgoing(sig) for sig in signatures]
        in_flight = asyncio.Semaphore(2)
        backend, revoke = self._backend_getter, self.revoke  # bound once, not per result

        async def publish(batch: list[Outgoing]) -> list[AsyncResult[Any]]:
            async with in_flight:
                published = await self._publish(batch, batch[0].message)
            return [AsyncResult(p.task_id, backend, o.message.name, revoke, just_sent=True)
                    for p, o in zip(published, batch, strict=True)]

        chunks = [outgoing[start:start + chunk] for start in range(0, len(outgoing), chunk)]
        return [r for results in await asyncio.gather(*(publish(b) for b in chunks)) for r in results]

    async def _send_plan(self, plan: Plan) -> None:
        """Open a compiled workflow's chords, then send its first tasks, in pipelined round trips."""
        items = []
        for spec in plan.entries:
            task = self.registry.get(spec.name)
            if task is not None:
                task.check_arguments(spec.args, spec.kwargs, spec.id)
            message = TaskMessage(id=spec.id, name=spec.name, args=spec.args, kwargs=spec.kwargs, queue=spec.queue,
                                  delay_ms=spec.delay_ms, wf=spec.wf.encode() if spec.wf else b"")
            if self.hooks.wants("on_publish"):
                self.hooks.call("on_publish", message)
            items.append(Outgoing(message, message.encode(self.config.max_payload_bytes)))
        if plan.chords or plan.later:
            try:
                await self.connections.broker.prepare_workflow(plan.chords, plan.later)
            except self.connections.errors as exc:
                first = plan.entries[0] if plan.entries else plan.later[0]
                raise SendError(
                    f"workflow (first task {first.name!r}, id {first.id}) could not be sent to "
                    f"{redact_url(self.config.broker)}: {type(exc).__name__}: {exc or 'timed out'}. None of "
                    "its tasks were queued; send the workflow again.", task_name=first.name, task_id=first.id,
                ) from exc
        if items:
            await self._publish(items, items[0].message)

    def _queue_for(self, name: str, queue: str | None, task_id: str, task: Task[..., Any] | None = None) -> str:
        """The queue a task goes to: given, else its task's (``task``, when the caller looked it up),
        else the default; checked once per name."""
        task = task or self.registry.get(name)
        chosen = queue or (task.options.queue if task else None) or self.config.default_queue
        if chosen not in self._checked_queues:
            if any(c in chosen for c in "{}: "):
                raise ConfigError(f"task {name!r} (id {task_id}): queue name {chosen!r} must not contain "
                                  "'{', '}', ':' or spaces")
            if len(self._checked_queues) < MAX_CHECKED_QUEUES:
                self._checked_queues.add(chosen)
        return chosen

    def _outgoing(self, sig: Signature) -> Outgoing:
        task_id = sig.task_id or new_id()
        try:
            args, kwargs = sig.resolved()
        except TypeError as exc:
            raise TaskArgumentsError(f"{exc} (task id {task_id}); nothing was sent") from None
        plain = sig.countdown is None and sig.eta is None and sig.queue is None
        options = NO_OPTIONS if plain else SendOptions(countdown=sig.countdown, eta=sig.eta, queue=sig.queue)
        message = self._message(sig.name, args, kwargs, options, task_id)
        return Outgoing(message, message.encode(self.config.max_payload_bytes))

    async def _publish(self, items: list[Outgoing], first: TaskMessage) -> list[Published]:
        try:  # the broker bounds each round trip by send_timeout_s
            return await self.connections.broker.publish(items)
        except self.connections.errors as exc:
            what = f"task {first.name!r} (id {first.id})" if len(items) == 1 else (
                f"{len(items)} tasks (first: {first.name!r}, id {first.id})")
            raise SendError(
                f"{what} could not be sent to {redact_url(self.config.broker)}: "
                f"{type(exc).__name__}: {exc or 'timed out'}. It may or may not have been queued; send it "
                f"again with task_id={first.id!r} to be sure (sending is idempotent per id).",
                task_name=first.name, task_id=first.id,
            ) from exc

    async def _send(self, name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any],
                    options: SendOptions) -> AsyncResult[Any]:
        message = self._message(name, args, kwargs, options)
        [published] = await self._publish([Outgoing(message, message.encode(self.config.max_payload_bytes))],
                                          message)
        return AsyncResult(published.task_id, self._backend_getter, name, self.revoke, just_sent=True)

    def _message(self, name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any],
                 options: SendOptions, task_id: str | None = None) -> TaskMessage:
        task_id = task_id or options.task_id or new_id()
        task = self.registry.get(name)
        if task is not None:
            task.check_arguments(args, kwargs, task_id)
        queue = self._queue_for(name, options.queue, task_id, task)
        eta_ms = expires_ms = expires_in_ms = None
        if options.eta is not None:
            eta_ms = _absolute_ms(name, task_id, "eta", options.eta)
        expires = options.expires
        if isinstance(expires, datetime):
            expires_ms = _absolute_ms(name, task_id, "expires", expires)
        elif expires is not None:
            expires_in_ms = int(expires * 1000)
        delay_ms = max(0, int(options.countdown * 1000)) if options.countdown else 0
        message = TaskMessage(id=task_id, name=name, args=args, kwargs=kwargs, queue=queue,
                              delay_ms=delay_ms, eta_ms=eta_ms, expires_ms=expires_ms, expires_in_ms=expires_in_ms,
                              dedup_key=options.dedup_key, dedup_ttl_ms=int(options.dedup_ttl_s * 1000))
        if self.hooks.wants("on_publish"):
            self.hooks.call("on_publish", message)
        return message

    # -- results, workers, lifecycle ---------------------------------------------------------

    def AsyncResult(self, task_id: str) -> AsyncResult[Any]:  # noqa: N802 - Celery's spelling
        """A handle on a task id that came from elsewhere (another process, a database)."""
        return AsyncResult(task_id, self._backend_getter, revoker=self.revoke)

    async def revoke(self, task_id: str, terminate: bool = False, reason: str = "revoked") -> str:
        """Revoke a task: queued, delayed or retry-waiting ones never run (state REVOKED at once);
        a running one is not run again, and with ``terminate`` its worker cancels it now (async)
        or sets its cancel token and abandons it (thread). Stored in Redis, so workers started
        later see it too. Returns the state afterwards; ResultNotFound for an unknown id."""
        try:
            state = await self.connections.broker.revoke(task_id, terminate, reason)
        except self.connections.errors as exc:
            raise BrokerError(f"task {task_id} could not be revoked on {redact_url(self.config.broker)}: "
                              f"{type(exc).__name__}: {exc or 'timed out'}. Nothing changed if the broker never "
                              "saw it; revoke it again (revoking is idempotent).", task_id=task_id) from exc
        if not state:
            raise ResultNotFound(task_id)
        return state

    @property
    def broker(self) -> Broker:
        """The broker this app sends to and its workers fetch from."""
        return self.connections.broker

    @property
    def backend(self) -> ResultBackend:
        """The result backend results are read from."""
        return self.connections.backend

    def worker(self, name: str | None = None, *, concurrency: int = 10, queues: list[str] | None = None,
               shutdown_grace_s: float | None = None, max_tasks: int | None = None,
               max_memory_mb: float | None = None, beat: bool = True) -> Worker:
        """A worker for this app (Machinery's NewWorker): ``await w.run()`` or ``async with w:``.

        ``max_tasks`` / ``max_memory_mb``: drain and stop after that many tasks / above that RSS;
        ``beat``: run the periodic scheduler here too (safe with any number of workers).
        """
        from aiocelery.worker.recycle import RecycleLimits  # runtimes sit above the app; imported on use
        from aiocelery.worker.worker import Worker

        limits = RecycleLimits(max_tasks=max_tasks, max_memory_mb=max_memory_mb)
        return Worker(self, name=name, concurrency=concurrency, queues=queues, shutdown_grace_s=shutdown_grace_s,
                      limits=limits, beat=beat)

    def _backend_getter(self) -> ResultBackend:
        return self.connections.backend

    @property
    def connections(self) -> Connections:
        """The broker, result backend, operations, limiter and clock this app's Config names,
        created on first use (connections open lazily) and again after ``close()``."""
        if self._conn is None:
            self._conn = connect(self.config, self._clock)
        return self._conn

    async def close(self) -> None:
        """Close every connection this app opened; it reconnects if used again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def _absolute_ms(name: str, task_id: str, what: str, when: datetime) -> int:
    """An aware datetime as Unix ms; naive ones refused."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise EncodeError(f"task {name!r} (id {task_id}): {what} {when!r} is naive; "
                          "pass an aware datetime, e.g. datetime.now(timezone.utc) + timedelta(...)")
    return int(when.timestamp() * 1000)


class TaskDecorator:
    """What ``@app.task(...)`` with options returns: apply it to an ``async def`` or a ``def``."""

    def __init__(self, app: App, options: TaskOptions,
                 on_register: Callable[[Task[..., Any]], None] | None = None) -> None:
        self._app = app
        self._options = options
        self._on_register = on_register

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Any:
        task = self._app._register(fn, self._options)
        if self._on_register is not None:
            self._on_register(task)
        return task
