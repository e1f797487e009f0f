"""In-process broker with the Redis broker's semantics, for tests and one-process use.

It works on a ``MemoryStore`` (``store.py``), which plays Redis; each method below mirrors one of
the Redis broker's Lua scripts.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Sequence

import orjson

from aiocelery import states
from aiocelery.brokers.base import Outgoing, Published
from aiocelery.brokers.memory.store import ChordState, Entry, MemoryStore, PendingDelivery
from aiocelery.wire.message import dumps
from aiocelery.wire.records import Delivery, ErrorInfo, Settlement
from aiocelery.wire.workflow import Child, ChordInit, Spec, WorkflowOps


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
        s.records[msg.id] = Entry(msg.id, msg.name, msg.queue, item.payload, created_ms=now,
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
            self.store.chords.setdefault(c.id, ChordState(c))
        for spec in later:
            if self.store.record(spec.id) is None:
                self.store.records[spec.id] = Entry(spec.id, spec.name, spec.queue, b"", created_ms=self._now(),
                                                     placeholder=True)

    def _apply_workflow(self, e: Entry, s: Settlement) -> None:
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

    def _chord_member_done(self, chord: ChordState, index: int, result: bytes) -> None:
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
        self.store.records[c.id] = Entry(c.id, c.name, c.queue, c.payload, created_ms=now, wf=c.wf)
        self._schedule(c.queue, c.id, now + c.delay_ms, now)

    def _fail(self, task_id: str, name: str, error: ErrorInfo | None) -> None:
        e = self.store.record(task_id)
        if e is not None and e.state in states.READY_STATES:
            return
        if e is None:
            e = self.store.records[task_id] = Entry(task_id, name, "", b"", created_ms=self._now())
        self._terminal(e, Settlement(states.FAILURE, error=error, reason="an earlier step failed"))

    async def ensure_queues(self, queues: Sequence[str]) -> None:
        """Nothing to create in memory."""

    def consumer(self, queues: Sequence[str], name: str, worker: str, *, slots: int = 0) -> MemoryConsumer:
        """A consumer taking deliveries for ``queues`` under ``name`` (``slots`` unused)."""
        return MemoryConsumer(self, list(queues), name, worker)

    def _take(self, queues: Sequence[str], consumer: str, count: int) -> list[tuple[str, str, str]]:
        taken: list[tuple[str, str, str]] = []
        for queue in queues:
            ready = self.store.ready.get(queue)
            while ready and len(taken) < count:
                entry_id, task_id = ready.popleft()
                self.store.pending.setdefault(queue, {})[entry_id] = PendingDelivery(task_id, consumer, 1)
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

    def _terminal(self, e: Entry, settlement: Settlement) -> None:
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
