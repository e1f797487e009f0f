"""``Signature``: a task call described by name, with typed or plain arguments and options.

A signature is partial by default: in a chain it receives the previous task's result as its
first argument (``task.s(...)``). An immutable one (``task.si(...)``) keeps its arguments.
``sig1 | sig2`` builds a chain; ``link``/``link_error`` attach callbacks (Machinery's OnSuccess
and OnError).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiocelery.tasks.args import Arg

if TYPE_CHECKING:
    from aiocelery.app import App
    from aiocelery.tasks.canvas import Canvas, chain
    from aiocelery.tasks.result import AsyncResult


@dataclass(frozen=True, slots=True)
class Signature:
    """A call to send: ``Signature("Add", args=[Arg("int64", 1), 2])`` (Machinery's tasks.Signature)."""

    name: str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    countdown: float | None = None
    eta: datetime | None = None
    task_id: str | None = None
    immutable: bool = False
    """True: a parent's result is not prepended to the arguments."""
    links: tuple[Signature, ...] = ()
    """Sent with the result as first argument when this task succeeds (Machinery's OnSuccess)."""
    errbacks: tuple[Signature, ...] = ()
    """Sent with (task id, error dict) when this task fails for good (Machinery's OnError)."""
    app: Any = field(default=None, compare=False, repr=False)
    """The app that made it (``task.s()``), so a workflow of them can ``apply_async()`` alone."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Signature needs a non-empty task name, got {self.name!r}")

    def resolved(self) -> tuple[tuple[Any, ...] | list[Any], dict[str, Any]]:
        """Arguments with every ``Arg`` checked and coerced; TypeError names the bad one. Where
        none is an ``Arg``, the signature's own tuple or list and dict (nothing is copied)."""
        args, kwargs = self.args, self.kwargs
        try:
            if (type(args) is not tuple and type(args) is not list) or _any_arg(args):
                args = [_resolve(a) for a in args]
            if kwargs and _any_arg(kwargs.values()):
                kwargs = {k: _resolve(v) for k, v in kwargs.items()}
        except TypeError as exc:
            raise TypeError(f"task {self.name!r}: {exc}") from None
        return args, kwargs

    def set(self, **options: Any) -> Signature:
        """A copy with options changed (queue, countdown, eta, task_id, immutable)."""
        return dataclasses.replace(self, **options)

    def link(self, callback: Signature) -> Signature:
        """A copy that also sends ``callback`` with this task's result when it succeeds."""
        return dataclasses.replace(self, links=(*self.links, callback))

    def link_error(self, errback: Signature) -> Signature:
        """A copy that also sends ``errback(task_id, error)`` when this task fails for good."""
        return dataclasses.replace(self, errbacks=(*self.errbacks, errback))

    def __or__(self, other: Canvas) -> chain:
        from aiocelery.tasks.canvas import chain  # canvas builds on signatures

        return chain(self, other)

    async def apply_async(self, app: App | None = None) -> AsyncResult[Any]:
        """Send it (with its links and errbacks); ``app`` defaults to the one of ``task.s()``."""
        from aiocelery.tasks.canvas import _apply

        result = await _apply(self, app)
        assert not isinstance(result, list)
        return result  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """The wire form (JSON-ready); typed Args are coerced first."""
        args, kwargs = self.resolved()
        return {"name": self.name, "args": args, "kwargs": kwargs, "queue": self.queue,
                "countdown": self.countdown, "task_id": self.task_id, "immutable": self.immutable,
                "links": [s.to_dict() for s in self.links], "errbacks": [s.to_dict() for s in self.errbacks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        """Rebuild from ``to_dict()``."""
        return cls(name=data["name"], args=tuple(data.get("args", ())), kwargs=dict(data.get("kwargs", {})),
                   queue=data.get("queue"), countdown=data.get("countdown"), task_id=data.get("task_id"),
                   immutable=bool(data.get("immutable", False)),
                   links=tuple(cls.from_dict(s) for s in data.get("links", ())),
                   errbacks=tuple(cls.from_dict(s) for s in data.get("errbacks", ())))


def _any_arg(values: Iterable[Any]) -> bool:
    for value in values:  # noqa: SIM110 - a loop, not any(): most calls have one or two plain values
        if isinstance(value, Arg):
            return True
    return False


def _resolve(value: Any) -> Any:
    return value.coerce() if isinstance(value, Arg) else value
