"""Every Redis key and channel name, built in one place.

Per queue ``Q`` (one hash tag, so a queue's stream, delayed set and dead letters share a slot)::

    <prefix>:{Q}:stream     STREAM  ready deliveries, one field ``id``
    <prefix>:{Q}:delayed    ZSET    task id -> due time (ms, Redis TIME)
    <prefix>:{Q}:dead       STREAM  dead letters
    channel <prefix>:{Q}:wake       an earlier due time was added to ``delayed``

With RabbitMQ as the broker (``Keys(streams=False)``) there is no stream: ``delayed`` also holds
the tasks waiting to be published (see docs/delivery.md, "RabbitMQ").

Per task (by id alone, so ``AsyncResult(id)`` in any process finds it without knowing the queue)::

    <prefix>:epoch          STRING  written by the first worker; gone = Redis lost its data
    <prefix>:task:<id>      HASH    name, queue, payload, state, attempt, crashes (absent: 0), times, result, error
    channel <prefix>:done:<id>      published on every terminal transition
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "aiocelery"
"""The one consumer group of every queue stream."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Key and channel names under one prefix."""

    prefix: str
    streams: bool = True
    """False where the queues live in another broker (RabbitMQ): ``stream`` is then '', which the
    scripts read as "make the task ready for a relay to publish" (lua/prelude.lua, push_ready)."""

    def stream(self, queue: str) -> str:
        """The queue's ready stream ('' when the queues are not in Redis)."""
        return f"{self.prefix}:{{{queue}}}:stream" if self.streams else ""

    def delayed(self, queue: str) -> str:
        """The queue's delayed set."""
        return f"{self.prefix}:{{{queue}}}:delayed"

    def dead(self, queue: str) -> str:
        """The queue's dead-letter stream."""
        return f"{self.prefix}:{{{queue}}}:dead"

    def wake(self, queue: str) -> str:
        """Channel telling promoters an earlier due time exists."""
        return f"{self.prefix}:{{{queue}}}:wake"

    def dedup(self, key: str) -> str:
        """An idempotency key holding the id of the task that claimed it."""
        return f"{self.prefix}:dedup:{key}"

    def rate(self, task_name: str) -> str:
        """A task's rate-limit state (GCRA theoretical arrival time)."""
        return f"{self.prefix}:rate:{task_name}"

    def slots(self, task_name: str, key: str) -> str:
        """The running runs of a task under one concurrency key."""
        return f"{self.prefix}:conc:{task_name}:{key}"

    def revoke_channel(self) -> str:
        """Channel telling workers to terminate a running task now."""
        return f"{self.prefix}:revoke"

    def periodic(self, name: str) -> str:
        """The latest fire time handled for a periodic entry."""
        return f"{self.prefix}:periodic:{name}"

    def chord(self, chord_id: str) -> str:
        """A chord's counter, results and callback template."""
        return f"{self.prefix}:chord:{chord_id}"

    def worker(self, worker_id: str) -> str:
        """A worker's heartbeat record."""
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers(self) -> str:
        """Index of worker records, scored by expiry (ms)."""
        return f"{self.prefix}:workers"

    @property
    def control(self) -> str:
        """Channel of control commands to workers."""
        return f"{self.prefix}:control"

    def task(self, task_id: str) -> str:
        """The task's record."""
        return f"{self.prefix}:task:{task_id}"

    def done(self, task_id: str) -> str:
        """Channel announcing the task's terminal state."""
        return f"{self.prefix}:done:{task_id}"

    @property
    def epoch(self) -> str:
        """Set once by the first worker; its absence later means Redis lost its data."""
        return f"{self.prefix}:epoch"

    @property
    def done_prefix(self) -> str:
        """``done(id)`` without the id, for scripts that build it."""
        return f"{self.prefix}:done:"
