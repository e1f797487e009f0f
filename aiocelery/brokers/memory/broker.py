"""In-process broker and store with the Redis broker's semantics, for tests and one-process use.

``MemoryStore`` plays Redis: task records, per-queue ready lists, pending deliveries owned by a
consumer, a delayed heap and dead letters. Each method below mirrors one Lua script.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from aiocelery import states
from aiocelery.brokers.base import Outgoing, Published
from aiocelery.timing.clock import Clock, SystemClock
from aiocelery.wire.message import dumps
from aiocelery.wire.records import DeadLetter, Delivery, ErrorInfo, Settlement, TaskRecord
from aiocelery.wire.workflow import Child, ChordInit, Spec, WorkflowOps

Listener = Callable[[bytes | None], None]


@dataclass(slots=True)
class _Entry:
    task_id: str
    name: str
    queue: str
    payload: bytes
    state: str = states.PENDING
    attempt: int = 0
    crashes: int = 0
    result: bytes | None = None
    error: ErrorInfo | None = None
    reason: str = ""
    worker: str = ""
    created_ms: int = 0
    started_ms: int = 0
    done_ms: int = 0
    expires_at: float | None = None
    """When the record itself goes away (the result TTL)."""
    revoked: str = ""
    task_expires_ms: int | None = None
    """When the task expires unstarted (``expires=``)."""
    retries: int = 0
    deferrals: int = 0
    wf: bytes = b""
    placeholder: bool = False


@dataclass(slots=True)
class _Chord:
    init: ChordInit
    results: dict[int, bytes] = field(default_factory=dict)
    failed: str = ""


@dataclass(slots=True)
class _Pending:
    task_id: str
    consumer: str
    deliveries: int


@dataclass(slots=True)
class MemoryStore:
    """Everything a ``memory://`` app keeps; shared by its broker and backend."""

    records: dict[str, _Entry] = field(default_factory=dict)
    ready: dict[str, deque[tuple[str, str]]] = field(default_factory=dict)
    pending: dict[str, dict[str, _Pending]] = field(default_factory=dict)
    delayed: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    dead: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dedup: dict[str, tuple[str, float]] = field(default_factory=dict)
    revoke_listeners: list[Callable[[str], None]] = field(default_factory=list)
    fired: dict[str, int] = field(default_factory=dict)
    chords: dict[str, _Chord] = field(default_factory=dict)
    clock: Clock = field(default_factory=SystemClock)
    listeners: dict[str, list[Listener]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    delayed_changed: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def record(self, task_id: str) -> _Entry | None:
        """The live record of ``task_id`` (expired ones are dropped on read)."""
        entry = self.records.get(task_id)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= time.monotonic():
            del self.records[task_id]
            return None
        return entry

    def add_ready(self, queue: str, task_id: str) -> None:
        """XADD: append a delivery for ``task_id``."""
        self.ready.setdefault(queue, deque()).append((f"{next(self._ids)}-0", task_id))
        self.changed.set()

    def notify(self, task_id: str, state: str) -> None:
        """PUBLISH on the task's done channel."""
        for listener in list(self.listeners.get(task_id, ())):
            listener(state.encode())

    def snapshot(self, task_id: str) -> TaskRecord | None:
        """The record as the backend reports it."""
        e = self.record(task_id)
        if e is None:
            return None
        return TaskRecord(id=e.task_id, name=e.name, queue=e.queue, state=e.state, attempt=e.attempt,
                          result=e.result, error=e.error, reason=e.reason, worker=e.worker,
                          created_ms=e.created_ms, started_ms=e.started_ms, done_ms=e.done_ms)


class MemoryBroker:
    """The broker protocol over a ``MemoryStore``."""

    def __init__(self, store: MemoryStore, *, result_ttl_s: float, max_crashes: int) -> None:
        self.store = store
        self._ttl_s = result_ttl_s
        self._max_crashes = max_crashes

    async def publish(self, items: Sequence[Outgoing]) -> list[Published]:
        """Mirror of enqueue.lua for each item."""
        return [self._enqueue(item) for item in items]

    def _enqueue(self, item: Outgoing) -> Published:
        msg, s = item.message, self.store
        if s.record(msg.id) is not None:
            return Published(False, msg.id)
        if msg.dedup_key:
            holder = s.dedup.get(msg.dedup_key)
            if holder is not None and holder[1] > time.monotonic():
                return Published(False, holder[0])
            s.dedup[msg.dedup_key] = (msg.id, time.monotonic() + msg.dedup_ttl_ms / 1000)
        now = self._now()
        expires = msg.expires_ms if msg.expires_in_ms is None else now + msg.expires_in_ms
        s.records[msg.id] = _Entry(msg.id, msg.name, msg.queue, item.payload, created_ms=now,
                                   task_expires_ms=expires, wf=msg.wf)
        due = msg.eta_ms if msg.eta_ms is not None else now + msg.delay_ms
        self._schedule(msg.queue, msg.id, due, now)
        return Published(True, msg.id)

    def _schedule(self, queue: str, task_id: str, due: int, now: int) -> None:
        if due > now:
            heapq.heappush(self.store.delayed.setdefault(queue, []), (due, task_id))
            self.store.delayed_changed.set()
        else:
            self.store.add_ready(queue, task_id)

    async def prepare_workflow(self, chords: Sequence[ChordInit], later: Sequence[Spec]) -> None:
        """Mirror of chord_open.lua."""
        for c in chords:
            self.store.chords.setdefault(c.id, _Chord(c))
        for spec in later:
            if self.store.record(spec.id) is None:
                self.store.records[spec.id] = _Entry(spec.id, spec.name, spec.queue, b"", created_ms=self._now(),
                                                     placeholder=True)

    def _apply_workflow(self, e: _Entry, s: Settlement) -> None:
        """Mirror of settle.lua's workflow part."""
        ops: WorkflowOps = s.workflow
        error = dumps(s.error.to_json()) if s.error else b"{}"
        for c in ops.children:
            self._create(c)
        for task_id, name in ops.cascade:
            self._fail(task_id, name, s.error)
        if ops.chord is None:
            return
        chord = self.store.chords.get(ops.chord.id)
        if chord is None:
            return
        if s.state == states.SUCCESS:
            self._chord_member_done(chord, ops.chord.index, s.result or b"null")
        elif not chord.failed:
            chord.failed = e.task_id
            self._fail(ops.chord.cb_id, ops.chord.cb_name, s.error)
            for task_id, name in ops.chord.cascade:
                self._fail(task_id, name, s.error)
            for spec, head, tail in chord.init.errbacks:
                body = head if spec.immutable else head + orjson.dumps(e.task_id) + b"," + error + tail
                self._create(Child(spec.id, spec.name, spec.queue, body, spec.delay_ms,
                                   spec.wf.encode() if spec.wf else b""))

    def _chord_member_done(self, chord: _Chord, index: int, result: bytes) -> None:
        if index in chord.results:
            return
        chord.results[index] = result
        init = chord.init
        if len(chord.results) == init.total and not chord.failed:
            body = init.head if init.callback.immutable else (
                init.head + b"[" + b",".join(chord.results[i] for i in range(init.total)) + b"]" + init.tail)
            self._create(Child(init.callback.id, init.callback.name, init.callback.queue, body,
                               init.callback.delay_ms, init.callback.wf.encode() if init.callback.wf else b""))

    def _create(self, c: Child) -> None:
        existing = self.store.record(c.id)
        if existing is not None and not (existing.placeholder and existing.state == states.PENDING):
            return
        now = self._now()
        self.store.records[c.id] = _Entry(c.id, c.name, c.queue, c.payload, created_ms=now, wf=c.wf)
        self._schedule(c.queue, c.id, now + c.delay_ms, now)

    def _fail(self, task_id: str, name: str, error: ErrorInfo | None) -> None:
        e = self.store.record(task_id)
        if e is not None and e.state in states.READY_STATES:
            return
        if e is None:
            e = self.store.records[task_id] = _Entry(task_id, name, "", b"", created_ms=self._now())
        self._terminal(e, Settlement(states.FAILURE, error=error, reason="an earlier step failed"))

    async def ensure_queues(self, queues: Sequence[str]) -> None:
        """Nothing to create in memory."""

    def consumer(self, queues: Sequence[str], name: str, worker: str) -> MemoryConsumer:
        """A consumer taking deliveries for ``queues`` under ``name``."""
        return MemoryConsumer(self, list(queues), name, worker)

    def _take(self, queues: Sequence[str], consumer: str, count: int) -> list[tuple[str, str, str]]:
        taken: list[tuple[str, str, str]] = []
        for queue in queues:
            ready = self.store.ready.get(queue)
            while ready and len(taken) < count:
                entry_id, task_id = ready.popleft()
                self.store.pending.setdefault(queue, {})[entry_id] = _Pending(task_id, consumer, 1)
                taken.append((queue, entry_id, task_id))
        return taken

    def _begin(self, queue: str, entry_id: str, task_id: str, worker: str) -> Delivery | None:
        """Mirror of begin.lua for one delivery."""
        s = self.store
        e = s.record(task_id)
        if e is None:
            self._finish(queue, entry_id)
            self._dead_letter(queue, task_id, "", "task record missing", worker)
            return None
        if e.state in states.READY_STATES:
            self._finish(queue, entry_id)
            return None
        if e.revoked:
            self._finish(queue, entry_id)
            self._terminal(e, Settlement(states.REVOKED, reason=e.revoked))
            return None
        if e.task_expires_ms is not None and self._now() >= e.task_expires_ms:
            self._finish(queue, entry_id)
            self._terminal(e, Settlement(states.REVOKED, reason="expired"))
            return None
        if e.state == states.STARTED:
            e.crashes += 1
        if e.crashes > self._max_crashes:
            reason = f"crashed its worker {e.crashes} times (max_crashes {self._max_crashes})"
            self._finish(queue, entry_id)
            self._terminal(e, Settlement(states.DEAD, reason=reason))
            self._dead_letter(queue, task_id, e.name, reason, worker)
            return None
        e.attempt += 1
        e.state, e.started_ms, e.worker = states.STARTED, self._now(), worker
        return Delivery(task_id=task_id, name=e.name, queue=queue, entry_id=entry_id, attempt=e.attempt,
                        payload=e.payload, redelivered=e.attempt - e.deferrals > 1, worker=worker,
                        retries=e.retries, deferrals=e.deferrals, workflow=e.wf, created_ms=e.created_ms,
                        crashes=e.crashes)

    def _finish(self, queue: str, entry_id: str) -> None:
        self.store.pending.get(queue, {}).pop(entry_id, None)

    def _terminal(self, e: _Entry, settlement: Settlement) -> None:
        e.state, e.done_ms = settlement.state, self._now()
        e.result, e.error, e.reason = settlement.result, settlement.error, settlement.reason
        e.expires_at = time.monotonic() + self._ttl_s
        self.store.notify(e.task_id, e.state)

    def _dead_letter(self, queue: str, task_id: str, name: str, reason: str, worker: str,
                     error: ErrorInfo | None = None) -> None:
        self.store.dead.setdefault(queue, []).append(
            {"entry_id": f"{next(self.store._ids)}-0", "id": task_id, "name": name, "reason": reason,
             "time_ms": str(self._now()), "worker": worker, "error": error})

    async def settle(self, delivery: Delivery, settlement: Settlement) -> bool:
        """Mirror of settle.lua: fenced on the attempt, then store + ack + notify."""
        e = self.store.record(delivery.task_id)
        if e is None or e.attempt != delivery.attempt:
            return False
        if e.state != states.STARTED:
            return e.state == settlement.state
        self._finish(delivery.queue, delivery.entry_id)
        if settlement.state in (states.RETRY, states.DEFER):
            if settlement.state == states.RETRY:
                e.state, e.error, e.retries = states.RETRY, settlement.error, e.retries + 1
            else:
                e.state, e.deferrals = states.PENDING, e.deferrals + 1
            now = self._now()
            self._schedule(delivery.queue, e.task_id, now + settlement.countdown_ms, now)
            return True
        self._terminal(e, settlement)
        if settlement.workflow is not None:
            self._apply_workflow(e, settlement)
        if settlement.state == states.DEAD or settlement.dead_letter:
            self._dead_letter(delivery.queue, e.task_id, e.name, settlement.reason, delivery.worker,
                              settlement.error)
        return True

    async def revoke(self, task_id: str, terminate: bool, reason: str) -> str:
        """Mirror of revoke.lua."""
        e = self.store.record(task_id)
        if e is None:
            return ""
        if e.state in states.READY_STATES:
            return e.state
        e.revoked = reason
        if e.state == states.STARTED:
            if terminate:
                for listener in list(self.store.revoke_listeners):
                    listener(task_id)
            return e.state
        self._terminal(e, Settlement(states.REVOKED, reason=reason))
        return states.REVOKED

    async def watch_revocations(self, on_terminate: Callable[[str], None]) -> None:
        """Register ``on_terminate`` until cancelled."""
        self.store.revoke_listeners.append(on_terminate)
        try:
            await asyncio.Event().wait()
        finally:
            self.store.revoke_listeners.remove(on_terminate)

    async def dead_letters(self, queue: str, count: int = 100) -> list[DeadLetter]:
        """The queue's dead letters, oldest first."""
        return [
            DeadLetter(entry_id=f["entry_id"], task_id=f["id"], name=f["name"], reason=f["reason"],
                       time_ms=int(f["time_ms"]), worker=f["worker"], error=f["error"])
            for f in self.store.dead.get(queue, [])[:count]
        ]

    async def requeue_dead(self, queue: str, entry_id: str) -> None:
        """Mirror of requeue.lua."""
        letters = self.store.dead.get(queue, [])
        letter = next((f for f in letters if f["entry_id"] == entry_id), None)
        if letter is None:
            raise ValueError(f"no dead letter {entry_id} in queue {queue!r}")
        e = self.store.record(letter["id"])
        if e is None or e.state not in (states.DEAD, states.FAILURE):
            raise ValueError(f"cannot requeue task {letter['id']}: its record is gone or not dead")
        e.state, e.crashes, e.reason, e.error, e.result, e.expires_at = states.PENDING, 0, "", None, None, None
        letters.remove(letter)
        self.store.add_ready(queue, e.task_id)

    async def purge_dead(self, queue: str) -> int:
        """Forget the queue's dead letters."""
        return len(self.store.dead.pop(queue, []))

    async def health_warnings(self) -> list[str]:
        """memory:// keeps nothing across restarts; say so once."""
        return ["memory:// broker: tasks live in this process only and vanish when it exits"]

    async def promote_forever(self, queues: Sequence[str]) -> None:
        """Move due tasks to ready; sleep until the next due time or a new delayed task."""
        s = self.store
        while True:
            s.delayed_changed.clear()
            soonest: int | None = None
            for queue in queues:
                heap = s.delayed.get(queue, [])
                while heap and heap[0][0] <= self._now():
                    _, task_id = heapq.heappop(heap)
                    s.add_ready(queue, task_id)
                if heap:
                    soonest = heap[0][0] if soonest is None else min(soonest, heap[0][0])
            await s.clock.wait(soonest, s.delayed_changed)

    async def now_ms(self) -> int:
        """The store's clock (a VirtualClock in tests)."""
        return self._now()

    async def record_fired(self, name: str, fire_ms: int) -> int | None:
        """Mirror of periodic.lua."""
        last = self.store.fired.get(name)
        if last is None or fire_ms > last:
            self.store.fired[name] = fire_ms
        return last

    def _now(self) -> int:
        return self.store.clock.now_ms()

    async def close(self) -> None:
        """Nothing to close."""


class MemoryConsumer:
    """One worker's fetch endpoint on a MemoryBroker."""

    def __init__(self, broker: MemoryBroker, queues: list[str], name: str, worker: str) -> None:
        self._broker = broker
        self._queues = queues
        self.name = name
        self.worker = worker

    async def fetch(self, count: int, block_s: float) -> list[Delivery]:
        """Take up to ``count`` ready deliveries, waiting up to ``block_s`` for the first."""
        b, store = self._broker, self._broker.store
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_s
        while True:
            taken = b._take(self._queues, self.name, count)
            if taken:
                return [d for d in (b._begin(q, e, t, self.worker) for q, e, t in taken) if d is not None]
            store.changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(store.changed.wait(), remaining)
            except TimeoutError:
                return []

    async def reclaim(self, count: int, min_idle_s: float) -> list[Delivery]:
        """Nothing to reclaim: memory deliveries die with their process."""
        return []

    def lease_keeper(self) -> None:
        """No leases in memory."""
        return None

    async def release(self) -> int:
        """Mirror of release.lua for every delivery this consumer still owns."""
        b, store, released = self._broker, self._broker.store, 0
        for queue in self._queues:
            owned = [(eid, p) for eid, p in store.pending.get(queue, {}).items() if p.consumer == self.name]
            for entry_id, p in owned:
                b._finish(queue, entry_id)
                e = store.record(p.task_id)
                if e is not None and e.state not in states.READY_STATES:
                    e.state = states.PENDING
                    store.add_ready(queue, p.task_id)
                    released += 1
        return released

    async def close(self) -> None:
        """Nothing to close."""
