"""Plain data passed between the layers: deliveries, settlements and stored task records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from aiocelery import states


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A remote exception: its type name, message and formatted traceback."""

    type: str
    message: str
    traceback: str
    origin_id: str = ""
    """When a workflow step failed because an earlier one did: the task that really failed."""
    origin_name: str = ""

    def to_json(self) -> dict[str, str]:
        """The dict stored in the task record."""
        data = {"type": self.type, "message": self.message, "traceback": self.traceback}
        if self.origin_id:
            data.update(origin_id=self.origin_id, origin_name=self.origin_name)
        return data

    @classmethod
    def from_json(cls, obj: Any) -> ErrorInfo:
        """Rebuild from ``to_json()``'s dict, tolerating missing fields."""
        data = obj if isinstance(obj, dict) else {}
        return cls(str(data.get("type", "Error")), str(data.get("message", "")), str(data.get("traceback", "")),
                   str(data.get("origin_id", "")), str(data.get("origin_name", "")))


class Delivery(NamedTuple):
    """One started attempt of a task, owned by one worker until it is settled or released.

    Immutable like the other records, but a NamedTuple: one is built per task on the hot path,
    5x faster than a frozen dataclass."""

    task_id: str
    name: str
    queue: str
    entry_id: str
    """The broker's id of this delivery (a stream entry id on Redis)."""
    attempt: int
    """1 for the first run; increases on every start, fencing older attempts out."""
    payload: bytes
    redelivered: bool
    """True when an earlier attempt was handed to some worker before."""
    worker: str = ""
    """Name of the worker running it (stored on the task record)."""
    retries: int = 0
    """Retries already done (RETRY transitions)."""
    deferrals: int = 0
    """Times it was put back unrun by a rate limit or concurrency cap (counted in ``attempt``)."""
    workflow: bytes = b""
    """What follows this task in a workflow (``workflow.Wf`` JSON), or empty."""
    created_ms: int = 0
    """When it was sent (broker time): queue wait = start - this."""
    crashes: int = 0
    """Worker crashes (lost leases) this task was started in before, counting this start's."""

    @property
    def run_number(self) -> int:
        """The attempt as the task sees it: starts that ran it, deferrals not counted."""
        return self.attempt - self.deferrals


@dataclass(slots=True)
class Settlement:
    """How an attempt ended, as the broker stores it: a terminal state plus result or error.

    Not frozen (two are built per task, and a frozen one costs twice as much to build); nothing
    changes one after it is made: ``timed`` and ``dataclasses.replace`` make new ones."""

    state: str
    result: bytes | None = None
    """The encoded return value, for SUCCESS."""
    error: ErrorInfo | None = None
    """The exception, for FAILURE and DEAD."""
    reason: str = ""
    """Why, for DEAD and REVOKED."""
    countdown_ms: int = 0
    """For RETRY and DEFER: when to run again."""
    dead_letter: bool = False
    """For FAILURE: also record a dead letter (retries exhausted), so it can be requeued."""
    workflow: Any = None
    """``workflow.WorkflowOps`` to apply in the same atomic step (links, errbacks, chord), or None."""
    runtime_s: float = 0.0
    """How long the task ran (for hooks and metrics)."""

    def __post_init__(self) -> None:
        if self.state not in states.READY_STATES and self.state not in (states.RETRY, states.DEFER):
            raise ValueError(f"a settlement must be terminal, RETRY or DEFER, got {self.state}")

    def timed(self, runtime_s: float) -> Settlement:
        """This settlement with ``runtime_s`` (cheaper than ``dataclasses.replace`` on the hot path)."""
        return Settlement(self.state, self.result, self.error, self.reason, self.countdown_ms, self.dead_letter,
                          self.workflow, runtime_s)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of a queue's dead-letter stream."""

    entry_id: str
    task_id: str
    name: str
    reason: str
    time_ms: int
    worker: str
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """What the result backend knows about one task id."""

    id: str
    name: str
    queue: str
    state: str
    attempt: int = 0
    result: bytes | None = None
    error: ErrorInfo | None = None
    reason: str = ""
    worker: str = ""
    created_ms: int = 0
    started_ms: int = 0
    done_ms: int = 0

    @property
    def ready(self) -> bool:
        """True once the state is terminal."""
        return self.state in states.READY_STATES
