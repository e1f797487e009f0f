"""Every error aiocelery raises, under one root.

::

    AioCeleryError
    ├── ConfigError                 a Config value, URL or task option is wrong (also ValueError)
    ├── TaskArgumentsError          arguments don't bind to the task's signature (also TypeError)
    ├── EncodeError                 a value can't be sent losslessly, or is too big (also ValueError)
    ├── NotRegistered               a task name this app does not know (also KeyError)
    ├── CanvasError                 a workflow that cannot be built (also ValueError)
    ├── BrokerError                 the broker could not do what was asked (unreachable, timed out)
    │   └── SendError               ... and the call was a send: re-send with the same id
    ├── DeadLetterError             no such dead letter, or it cannot be requeued (also ValueError)
    ├── TaskError                   the task ended badly; raised by ``AsyncResult.get()``
    │   ├── TaskFailed              it raised: remote type, message and traceback attached
    │   ├── TaskDead                dead-lettered (unknown task, bad message, too many crashes)
    │   └── TaskRevoked             revoked before or while running
    ├── ResultError                 the result itself can't be had
    │   ├── ResultNotFound          the id was never sent, or its result expired
    │   ├── ResultTimeout           ``get(timeout=)`` ran out (also TimeoutError)
    │   └── ResultLost              Redis lost its data while the task was pending
    ├── Retry                       raised by a task: run it again later (control flow, not a failure)
    ├── SoftTimeLimitExceeded       raised into a task at its soft time limit, to clean up
    └── TimeLimitExceeded           a run passed its hard time limit and was stopped; what the
                                    retry policy sees (put it in ``autoretry_for`` to retry)

Every message names the task and its id where there is one, and says what to do. Errors of the
client underneath (connection loss, timeouts, Redis error replies) never reach users bare: a
public call wraps them in ``BrokerError``/``SendError`` with the original chained as ``__cause__``.
"""

from __future__ import annotations


class AioCeleryError(Exception):
    """Root of every aiocelery error."""


class ConfigError(AioCeleryError, ValueError):
    """A configuration value or URL is invalid."""


class TaskArgumentsError(AioCeleryError, TypeError):
    """The arguments do not bind to the task's signature; nothing was sent."""


class EncodeError(AioCeleryError, ValueError):
    """A value cannot be serialized without loss, or the payload is too large; nothing was sent."""


class BrokerError(AioCeleryError):
    """The broker could not be reached, or did not answer in time, for an operation; the cause is
    chained. ``task_id`` names the task concerned, where there is one."""

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class SendError(BrokerError):
    """The broker did not accept the task (unreachable or timed out); re-send with the same id."""

    def __init__(self, message: str, *, task_name: str, task_id: str) -> None:
        super().__init__(message, task_id=task_id)
        self.task_name = task_name


class DeadLetterError(AioCeleryError, ValueError):
    """A dead letter that does not exist, or whose task cannot be requeued; the message says why."""


class NotRegistered(AioCeleryError, KeyError):
    """No task of this name is registered with the app."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task not registered"


class CanvasError(AioCeleryError, ValueError):
    """A workflow that cannot be built (e.g. a group followed directly by another group)."""


class TaskError(AioCeleryError):
    """A task reached a bad terminal state; carries its id and name."""

    def __init__(self, message: str, *, task_id: str, task_name: str) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.task_name = task_name


class TaskFailed(TaskError):
    """The task raised; ``exc_type``, ``exc_message`` and ``remote_traceback`` say what and where."""

    def __init__(
        self,
        *,
        task_id: str,
        task_name: str,
        exc_type: str,
        exc_message: str,
        remote_traceback: str,
    ) -> None:
        super().__init__(
            f"task {task_name!r} (id {task_id}) failed with {exc_type}: {exc_message}\n"
            f"remote traceback:\n{remote_traceback}",
            task_id=task_id,
            task_name=task_name,
        )
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.remote_traceback = remote_traceback


class TaskDead(TaskError):
    """The task was dead-lettered; ``reason`` says why."""

    def __init__(self, *, task_id: str, task_name: str, reason: str) -> None:
        super().__init__(
            f"task {task_name!r} (id {task_id}) was dead-lettered: {reason}. "
            "Inspect it with `python -m aiocelery dead list`.",
            task_id=task_id,
            task_name=task_name,
        )
        self.reason = reason


class TaskRevoked(TaskError):
    """The task was revoked and will not run."""

    def __init__(self, *, task_id: str, task_name: str, reason: str) -> None:
        super().__init__(
            f"task {task_name!r} (id {task_id}) was revoked: {reason}",
            task_id=task_id,
            task_name=task_name,
        )
        self.reason = reason


class ResultError(AioCeleryError):
    """The result of a task id cannot be obtained."""

    def __init__(self, message: str, *, task_id: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class ResultNotFound(ResultError):
    """No task with this id exists: never sent, sent elsewhere, or its result expired."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"no task with id {task_id} is known to the result backend: it was never sent to this "
            "broker, or its result expired (see Config.result_ttl_s). Check the id and the broker URL.",
            task_id=task_id,
        )


class ResultTimeout(ResultError, TimeoutError):
    """``get(timeout=)`` expired before the task finished; the task itself goes on."""

    def __init__(self, task_id: str, timeout: float, state: str) -> None:
        super().__init__(
            f"task {task_id} did not finish within {timeout:g} s (it is {state}); "
            "call get() again with a longer timeout, or check that a worker consumes its queue.",
            task_id=task_id,
        )
        self.timeout = timeout
        self.state = state


class ResultLost(ResultError):
    """Redis lost the task's data (restarted empty, or the key was evicted) before it finished."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"task {task_id} was pending but its record vanished from Redis (restarted without "
            "persistence, or evicted: set maxmemory-policy noeviction). Send it again.",
            task_id=task_id,
        )


class Retry(AioCeleryError):
    """Raise inside a task to run it again after ``countdown`` seconds (Machinery's ErrRetryTaskLater).

    Counts against ``max_retries``; once they are used up the task fails with ``exc`` (or this).
    """

    def __init__(self, countdown: float | None = None, exc: BaseException | None = None) -> None:
        super().__init__(f"retry in {countdown:g} s" if countdown is not None else "retry")
        self.countdown = countdown
        self.exc = exc


class SoftTimeLimitExceeded(AioCeleryError):
    """Raised inside a task when it reaches ``soft_time_limit_s``: clean up and return or raise."""


class TimeLimitExceeded(AioCeleryError):
    """A run went past its hard ``time_limit_s``: an async task was cancelled, a thread task
    abandoned. It is the error the retry policy sees: ``autoretry_for=(TimeLimitExceeded,)``
    retries such runs."""
