"""``Task[P, R]``: a registered function that can be sent (``delay``) or called directly."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from aiocelery.exceptions import TaskArgumentsError
from aiocelery.tasks.result import AsyncResult
from aiocelery.tasks.signature import Signature
from aiocelery.timing.rate import Rate
from aiocelery.timing.retry import RetryPolicy

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Per-task options given to ``@app.task(...)``."""

    name: str | None = None
    """Registered name; defaults to ``module.qualname``."""
    queue: str | None = None
    """Queue the task is sent to unless the call names another; default: Config.default_queue."""
    max_retries: int | None = None
    """Most retries after a failure (used by the retry policy); None: the app's default."""
    time_limit_s: float | None = None
    """Hard limit: an async task is cancelled, a thread task abandoned (and counted); FAILURE."""
    soft_time_limit_s: float | None = None
    """Soft limit: SoftTimeLimitExceeded is raised inside the task (async and thread tasks)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """When and how often a failed attempt runs again."""
    rate_limit: Rate | None = None
    """Cluster-wide start rate of this task, e.g. ``"100/s"``; excess starts wait without a slot."""
    concurrency_key: str | Callable[..., str] | None = None
    """Argument name (or a function of the arguments) whose value groups runs for ``concurrency_limit``."""
    concurrency_limit: int | None = None
    """At most this many runs at once per ``concurrency_key`` value, across the cluster."""


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Per-call options of ``apply_async`` / ``send_task``."""

    countdown: float | None = None
    eta: datetime | None = None
    queue: str | None = None
    task_id: str | None = None
    expires: float | datetime | None = None
    dedup_key: str | None = None
    dedup_ttl_s: float = 3600.0


NO_OPTIONS = SendOptions()
"""The options of a plain ``delay()`` (shared: it is frozen, and building one costs 2 µs)."""


class Sender(Protocol):
    """What a Task needs from its app to send itself."""

    async def _send(self, name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any],
                    options: SendOptions) -> AsyncResult[Any]: ...


class Task(Generic[P, R]):
    """A task: ``await t.delay(*args)`` sends it, ``t(*args)`` calls the function in-process."""

    def __init__(self, fn: Callable[P, Any], name: str, options: TaskOptions, sender: Sender) -> None:
        self.fn = fn
        """The wrapped function (``async def`` or plain ``def``)."""
        self.name = name
        """The registered name workers look it up by."""
        self.options = options
        """The options it was declared with."""
        self.is_async = inspect.iscoroutinefunction(fn)
        """True for ``async def`` tasks (run on the loop); plain ones run in the thread pool."""
        self.signature = inspect.signature(fn)
        """The function's signature, used to check arguments at send time."""
        params = self.signature.parameters.values()
        plain = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in params)
        self._arity = len(self.signature.parameters) if plain else -1
        self._sender = sender
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run the function here and now (no broker); a coroutine for async tasks."""
        return self.fn(*args, **kwargs)

    async def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Send the task with these arguments; returns its AsyncResult."""
        return await self._sender._send(self.name, args, kwargs, NO_OPTIONS)

    async def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        expires: float | datetime | None = None,
        dedup_key: str | None = None,
        dedup_ttl_s: float = 3600.0,
    ) -> AsyncResult[R]:
        """Send with options: ``countdown`` s or aware ``eta``; another ``queue``; a fixed ``task_id``;
        ``expires`` (s or aware datetime: never started after); ``dedup_key`` (while it lives,
        sending again returns the existing task)."""
        options = SendOptions(countdown=countdown, eta=eta, queue=queue, task_id=task_id, expires=expires,
                              dedup_key=dedup_key, dedup_ttl_s=dedup_ttl_s)
        return await self._sender._send(self.name, args, kwargs or {}, options)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A partial Signature: in a chain it gets the previous result as its first argument."""
        return Signature(self.name, args=args, kwargs=kwargs, queue=self.options.queue, app=self._sender)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable Signature: it keeps exactly these arguments, whatever ran before."""
        return Signature(self.name, args=args, kwargs=kwargs, queue=self.options.queue, immutable=True,
                         app=self._sender)

    def binds(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> bool:
        """True when the arguments bind to the signature (a fast path for plain positional calls)."""
        if not kwargs and len(args) == self._arity:
            return True
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError:
            return False
        return True

    def check_arguments(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], task_id: str) -> None:
        """Raise TaskArgumentsError, naming the task, when the arguments don't bind."""
        if not kwargs and len(args) == self._arity:
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TaskArgumentsError(
                f"task {self.name!r} (id {task_id}) called with bad arguments: {exc}; "
                f"its signature is {self.name}{self.signature}. Nothing was sent."
            ) from None
