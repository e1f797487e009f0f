"""The name -> Task map of one app (no global registry)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiocelery.exceptions import NotRegistered
from aiocelery.tasks.task import Task


class Registry:
    """Tasks by name; registering a different function under a taken name is an error."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}

    def add(self, task: Task[Any, Any]) -> None:
        """Register ``task``; re-registering the same function is a no-op."""
        existing = self._tasks.get(task.name)
        if existing is not None and existing.fn is not task.fn:
            raise ValueError(
                f"task name {task.name!r} is already registered to {existing.fn!r}; "
                "pass name=... to @app.task to register another function"
            )
        self._tasks[task.name] = task

    def get(self, name: str) -> Task[Any, Any] | None:
        """The task named ``name``, or None."""
        return self._tasks.get(name)

    def __getitem__(self, name: str) -> Task[Any, Any]:
        task = self._tasks.get(name)
        if task is None:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise NotRegistered(f"no task named {name!r} is registered (registered: {known})")
        return task

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)
