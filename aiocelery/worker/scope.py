"""A cancel scope for one run, in plain asyncio: a deadline and/or ``cancel()`` from elsewhere.

The worker wraps every run in one (revoke with terminate, a lost lease), a time-limited task in
a second (its hard limit), and each fetch in one (stopping interrupts a blocking read), so it
must cost next to nothing: no anyio backend lookup, no
timer unless there is a deadline. Like ``asyncio.timeout``, it swallows only the cancellation
it asked for: when the worker itself is being cancelled too (shutdown), the ``CancelledError``
goes on up.

It is a plain ``with`` block entered in the task it cancels. A cancellation it requests while
that task waits inside the block is always delivered inside the block (the task resumes where
it waits); one requested once the block is left does nothing.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any


class RunScope:
    """``with RunScope(deadline) as scope: await ...``; ``scope.cancel()``; ``scope.cancelled_caught``."""

    __slots__ = ("_cancelling", "_deadline", "_done", "_requested", "_task", "_timer", "cancelled_caught")

    def __init__(self, deadline: float | None = None, task: asyncio.Task[Any] | None = None) -> None:
        self._deadline = deadline
        """Loop time (``loop.time()``) at which the block is cancelled; None: no limit."""
        self._task: asyncio.Task[Any] | None = task
        """The task the block runs in (found on entry when not given)."""
        self._timer: asyncio.TimerHandle | None = None
        self._cancelling = 0
        self._requested = False  # cancel() was called (before or inside the block)
        self._done = False  # the block was left
        self.cancelled_caught = False
        """True when the block ended because this scope cancelled it."""

    def cancel(self) -> None:
        """Cancel the block now (or as soon as it is entered); no effect once it is left."""
        if self._done or self._requested:
            return
        self._requested = True
        if self._task is not None:
            self._task.cancel()

    def __enter__(self) -> RunScope:
        task = self._task or asyncio.current_task()
        if task is None:
            raise RuntimeError("RunScope must be entered inside an asyncio task")
        self._task = task
        self._cancelling = task.cancelling()
        if self._requested:
            task.cancel()
        elif self._deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(self._deadline, self.cancel)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        if not self._requested or self._task is None:
            return False
        # Withdraw our request; swallow the error only if nobody else asked to cancel this task.
        if self._task.uncancel() <= self._cancelling and exc_type is not None \
                and issubclass(exc_type, asyncio.CancelledError):
            self.cancelled_caught = True
            return True
        return False
