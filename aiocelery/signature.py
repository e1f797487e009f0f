"""``Signature``: a task call described by name, with typed or plain arguments and options."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .args import Arg


@dataclass(frozen=True, slots=True)
class Signature:
    """A call to send: ``Signature("Add", args=[Arg("int64", 1), 2])`` (the seed's tasks.Signature)."""

    name: str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    countdown: float | None = None
    eta: datetime | None = None
    task_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Signature needs a non-empty task name, got {self.name!r}")

    def resolved(self) -> tuple[list[Any], dict[str, Any]]:
        """Arguments with every ``Arg`` checked and coerced; TypeError names the bad one."""
        try:
            args = [_resolve(a) for a in self.args]
            kwargs = {k: _resolve(v) for k, v in self.kwargs.items()}
        except TypeError as exc:
            raise TypeError(f"task {self.name!r}: {exc}") from None
        return args, kwargs

    def set(self, **options: Any) -> Signature:
        """A copy with options changed (queue, countdown, eta, task_id)."""
        return dataclasses.replace(self, **options)


def _resolve(value: Any) -> Any:
    return value.coerce() if isinstance(value, Arg) else value
