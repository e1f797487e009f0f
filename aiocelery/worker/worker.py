"""The worker: one fetcher feeding N consumers, plus the delayed-task promoter, in one task group.

Beside the loop, two daemon threads: the lease thread renews running deliveries' leases (so a
blocked loop cannot lose them) and the watchdog names any task that blocks the loop.

Shutdown (SIGTERM/SIGINT or ``stop()``): stop fetching, let in-flight tasks finish within the
grace period, cancel what is left, and hand every delivery still held back to its queue so
another worker starts it at once. A second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio import CancelScope

from aiocelery import states
from aiocelery.brokers.base import TRANSIENT_ERRORS, Broker, Consumer
from aiocelery.tasks.context import TaskContext
from aiocelery.timing.reconnect import ReconnectDelay
from aiocelery.wire.records import Delivery, Settlement
from aiocelery.worker.beat import Scheduler
from aiocelery.worker.executor import Executor
from aiocelery.worker.fetcher import Fetcher, Slots
from aiocelery.worker.lease_thread import LeaseThread
from aiocelery.worker.presence import Presence
from aiocelery.worker.recycle import RecycleLimits
from aiocelery.worker.scope import RunScope
from aiocelery.worker.settle import Settler
from aiocelery.worker.watchdog import LoopWatchdog

if TYPE_CHECKING:
    from aiocelery.app import App

log = logging.getLogger("aiocelery.worker")


class _Run:
    """One running delivery: its cancel scope, its context, and why it was cancelled."""

    __slots__ = ("ctx", "delivery", "revoked", "scope")

    def __init__(self, delivery: Delivery, ctx: TaskContext, task: asyncio.Task[Any] | None) -> None:
        self.delivery = delivery
        self.ctx = ctx
        self.scope = RunScope(task=task)
        self.revoked = False

    def cancelled_outcome(self) -> Settlement | None:
        """REVOKED when a revoke terminated it; None (nothing stored) when its lease was lost."""
        if self.revoked:
            return Settlement(states.REVOKED, reason="revoked: terminated while running")
        return None


class Worker:
    """Consumes ``queues`` with ``concurrency`` tasks at a time; ``await run()`` or ``async with``."""

    def __init__(self, app: App, *, name: str | None = None, concurrency: int = 10,
                 queues: list[str] | None = None, shutdown_grace_s: float | None = None,
                 limits: RecycleLimits | None = None, beat: bool = True) -> None:
        if concurrency < 1:
            raise ValueError(f"worker concurrency must be >= 1, got {concurrency}")
        self.app = app
        self.name = name or f"worker@{socket.gethostname()}"
        """The name shown in logs and stored on the tasks it runs."""
        self.concurrency = concurrency
        """How many tasks run at once."""
        self.queues = list(queues or [app.config.default_queue])
        """The queues consumed, in priority order."""
        self.grace_s = shutdown_grace_s if shutdown_grace_s is not None else app.config.shutdown_grace_s
        """Seconds in-flight tasks may take to finish after a stop is requested."""
        self.beat = beat
        """Run the periodic scheduler inside this worker (any number of workers may)."""
        self.limits = limits or RecycleLimits()
        """When to drain and exit by itself (max tasks, memory, abandoned threads)."""
        self.consumer_name = f"{self.name}:{os.getpid()}:{os.urandom(4).hex()}"
        """Unique owner name of this worker's deliveries."""
        self.processed = 0
        """Tasks settled (any outcome)."""
        self.failed = 0
        """Tasks settled as FAILURE or DEAD."""
        self.released = 0
        """Deliveries handed back at shutdown."""
        self.exit_code = 0
        """0, or ``RecycleLimits.EXIT_UNHEALTHY`` when it stopped because threads were stuck."""
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()
        self._slots = Slots(concurrency)
        self._runs: dict[str, _Run] = {}
        self._by_task: dict[asyncio.Task[object], Delivery] = {}
        self._fetcher: Fetcher | None = None
        self._consumers_scope: CancelScope | None = None
        self._background: asyncio.Task[None] | None = None

    # -- control -----------------------------------------------------------------------------

    def stop(self, *, immediate: bool = False) -> None:
        """Stop fetching and drain; ``immediate`` cancels running tasks and hands them back now."""
        self._stopping.set()
        self._slots.wake()
        if self._fetcher is not None:
            self._fetcher.interrupt()
        if immediate and self._consumers_scope is not None:
            self._consumers_scope.cancel()

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        """Run until stopped (SIGTERM/SIGINT when handlers are installed); Machinery's Launch()."""
        loop = asyncio.get_running_loop()
        handled = install_signal_handlers and threading.current_thread() is threading.main_thread()
        if handled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._run()
        finally:
            if handled:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    @property
    def ready(self) -> bool:
        """True while the worker really consumes: started, not stopping, broker reachable, and the
        fetch loop came back recently (a stuck fetch loop makes it not ready)."""
        f = self._fetcher
        if f is None or not self._started.is_set() or self._stopping.is_set() or f.outage:
            return False
        return time.monotonic() - f.last_ok < 3 * self.app.config.fetch_block_s + 5

    def active(self) -> list[dict[str, Any]]:
        """The tasks running now: id, name, queue, attempt."""
        return [{"id": r.delivery.task_id, "name": r.delivery.name, "queue": r.delivery.queue,
                 "attempt": r.delivery.run_number}
                for r in self._runs.values()]

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping.is_set():
            log.warning("%s again: cancelling %d running task(s) and handing them back", sig.name, self._slots.used)
            self.stop(immediate=True)
            return
        log.warning("%s: stopping; %d task(s) in flight get %g s to finish (signal again to stop now)",
                    sig.name, self._slots.used, self.grace_s)
        self.stop()

    async def __aenter__(self) -> Worker:
        self._background = asyncio.get_running_loop().create_task(self.run(install_signal_handlers=False))
        started = asyncio.ensure_future(self._started.wait())
        await asyncio.wait({started, self._background}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._background.done():
            self._background.result()  # raises why it could not start
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stop()
        if self._background is not None:
            await self._background

    # -- the task group ----------------------------------------------------------------------

    async def _run(self) -> None:
        broker, config = self.app.broker, self.app.config
        if not await self._prepare(broker):
            return
        loop = asyncio.get_running_loop()
        consumer = broker.consumer(self.queues, self.consumer_name, self.name, slots=self.concurrency)
        keeper = consumer.lease_keeper()
        leases = LeaseThread(keeper, config.lease_s, loop, self._lease_lost) if keeper else None
        watchdog = LoopWatchdog(loop, config.blocked_loop_warn_s, self._describe)
        conn = self.app.connections
        executor = Executor(self.app.registry, self.name, threads=self.concurrency, limiter=conn.limiter,
                            slot_ttl_s=3 * config.lease_s, hooks=self.app.hooks)
        self._fetcher = Fetcher(consumer, self._slots, block_s=config.fetch_block_s, lease_s=config.lease_s,
                                reclaim_interval_s=config.reclaim_interval_s,
                                leases_healthy=lambda: leases is None or leases.healthy)
        for thread in (leases, watchdog):
            if thread is not None:
                thread.start()
        try:
            await self._serve(broker, executor, Settler(broker, self, self.app.hooks), leases)
        finally:
            executor.threads.shutdown()
            watchdog.stop()
            with anyio.CancelScope(shield=True):
                await self._hand_back(consumer)
            if leases is not None:
                await anyio.to_thread.run_sync(leases.stop)
            if executor.threads.abandoned:
                log.warning("%d thread task(s) were abandoned still running", executor.threads.abandoned)

    async def _serve(self, broker: Broker, executor: Executor, settler: Settler, leases: LeaseThread | None) -> None:
        assert self._fetcher is not None
        # XREADGROUP's COUNT applies per stream, so one fetch may bring up to count x queues.
        ready: asyncio.Queue[Delivery | None] = asyncio.Queue()  # the fetcher takes only for free slots
        async with anyio.create_task_group() as side:
            side.start_soon(self._promote, broker)
            side.start_soon(self._watch_revocations, broker)
            presence = Presence(self, self.app.connections.operations)
            side.start_soon(self._keep_running, "heartbeat", presence.run)
            side.start_soon(self._keep_running, "control listener",
                            lambda: self.app.connections.operations.watch_control(presence.on_command))
            if self.beat and self.app.periodic_entries:
                side.start_soon(self._keep_running, "periodic scheduler", Scheduler(self.app).run)
            async with anyio.create_task_group() as consumers:
                self._consumers_scope = consumers.cancel_scope
                for _ in range(self.concurrency):
                    consumers.start_soon(self._consume, ready, executor, settler, leases)
                self._started.set()
                log.info("worker %s ready: consuming %s with concurrency %d", self.name,
                         ", ".join(self.queues), self.concurrency)
                self.app.hooks.call("on_worker_start", self)
                try:
                    await self._fetcher.run(ready, self._stopping)
                finally:
                    for _ in range(self.concurrency):  # after what was fetched: each consumer ends on one
                        ready.put_nowait(None)
                consumers.cancel_scope.deadline = anyio.current_time() + self.grace_s
            side.cancel_scope.cancel()

    async def _prepare(self, broker: Broker) -> bool:
        """Create the queues, waiting out an unreachable broker; False if stopped meanwhile."""
        backoff = ReconnectDelay(cap=10.0)
        while not self._stopping.is_set():
            try:
                await broker.ensure_queues(self.queues)
                for warning in await broker.health_warnings():
                    log.warning("%s", warning)
                return True
            except TRANSIENT_ERRORS as exc:
                delay = backoff.next_delay()
                log.warning("cannot reach the broker (%s: %s); retrying in %.1f s", type(exc).__name__, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        return False

    async def _hand_back(self, consumer: Consumer) -> None:
        try:
            self.released = await consumer.release()
        except Exception:
            log.exception("could not hand deliveries back; they return to the queue when their lease ends")
        finally:
            await consumer.close()
        if self.released:
            log.warning("handed %d unfinished task(s) back to the queue", self.released)
        log.info("worker %s stopped: %d processed, %d failed", self.name, self.processed, self.failed)
        self.app.hooks.call("on_worker_stop", self)

    # -- one delivery ------------------------------------------------------------------------

    async def _consume(self, ready: asyncio.Queue[Delivery | None], executor: Executor,
                       settler: Settler, leases: LeaseThread | None) -> None:
        current = asyncio.current_task()
        while (d := await ready.get()) is not None:
            if d.task_id in self._runs:  # reclaimed our own running delivery: it runs already
                self._slots.give()
                continue
            try:
                await self._handle(d, executor, settler, leases, current)
            finally:
                self._slots.give()
            self._check_limits(executor)

    async def _handle(self, d: Delivery, executor: Executor, settler: Settler, leases: LeaseThread | None,
                      current: asyncio.Task[Any] | None) -> None:
        """Run one delivery and settle it; hooks hear of a run that ends without an outcome."""
        hooks = self.app.hooks
        if leases is not None:
            leases.hold(d)
        hooks.call("on_received", d)
        run = _Run(d, executor.context(d), current)
        self._runs[d.task_id] = run
        if current is not None:
            self._by_task[current] = d
        try:
            with run.scope:
                settlement: Settlement | None = await executor.run(d, run.ctx)
            self._runs.pop(d.task_id, None)
            if run.scope.cancelled_caught:
                settlement = run.cancelled_outcome()
            if settlement is not None:
                await settler.settle(d, settlement)
            else:
                hooks.call("on_released", d, "lease lost: another worker runs it")
        except BaseException:
            hooks.call("on_released", d, "handed back at shutdown")
            raise
        finally:
            self._runs.pop(d.task_id, None)
            if current is not None:
                self._by_task.pop(current, None)
            if leases is not None:
                leases.drop(d)

    def _lease_lost(self, entry_id: str) -> None:
        for run in list(self._runs.values()):
            if run.delivery.entry_id == entry_id:
                log.warning("lease of task %s[%s] lost (another worker took it over); cancelling the local run",
                            run.delivery.name, run.delivery.task_id)
                run.scope.cancel()

    def _terminate(self, task_id: str) -> None:
        run = self._runs.get(task_id)
        if run is not None:
            log.warning("task %s[%s] revoked with terminate: cancelling it", run.delivery.name, task_id)
            run.revoked = True
            run.ctx.request_cancel()
            run.scope.cancel()

    async def _watch_revocations(self, broker: Broker) -> None:
        await self._keep_running("revocation listener", lambda: broker.watch_revocations(self._terminate))

    @staticmethod
    async def _keep_running(what: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a side loop forever, restarting it with backoff when it fails (e.g. Redis is gone)."""
        backoff = ReconnectDelay()
        while True:
            try:
                await loop()
            except Exception as exc:
                delay = backoff.next_delay()
                log.warning("%s failed (%s: %s); restarting in %.2f s", what, type(exc).__name__, exc, delay)
                await anyio.sleep(delay)

    def _check_limits(self, executor: Executor) -> None:
        if self._stopping.is_set():
            return
        reason = self.limits.exceeded(self.processed, executor.threads.stuck)
        if reason:
            log.warning("%s: draining and exiting for the supervisor to restart this worker", reason)
            if self.limits.unhealthy(executor.threads.stuck):
                self.exit_code = RecycleLimits.EXIT_UNHEALTHY
            self.stop()

    def _describe(self, task: asyncio.Task[object] | None) -> str:
        d = self._by_task.get(task) if task is not None else None
        if d is None:
            return f"asyncio task {task.get_name() if task else '?'} (not a task run)"
        return f"task {d.name}[{d.task_id}] (attempt {d.attempt})"

    async def _promote(self, broker: Broker) -> None:
        await self._keep_running("delayed-task promoter", lambda: broker.promote_forever(self.queues))
