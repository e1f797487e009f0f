"""The worker: one fetcher feeding N consumers, plus the delayed-task promoter, in one task group.

Shutdown (SIGTERM/SIGINT or ``stop()``): stop fetching, let in-flight tasks finish within the
grace period, cancel what is left, and hand every delivery still held back to its queue so
another worker starts it at once. A second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from anyio import CancelScope
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._backoff import Backoff
from ..brokers.base import TRANSIENT_ERRORS, Broker, Consumer
from ..records import Delivery
from .executor import Executor
from .settle import Settler

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("aiocelery.worker")


class Worker:
    """Consumes ``queues`` with ``concurrency`` tasks at a time; ``await run()`` or ``async with``."""

    def __init__(self, app: App, *, name: str | None = None, concurrency: int = 10,
                 queues: list[str] | None = None, shutdown_grace_s: float | None = None) -> None:
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
        self.consumer_name = f"{self.name}:{os.getpid()}:{secrets.token_hex(4)}"
        """Unique owner name of this worker's deliveries."""
        self.processed = 0
        """Tasks settled (any outcome)."""
        self.failed = 0
        """Tasks settled as FAILURE or DEAD."""
        self.released = 0
        """Deliveries handed back at shutdown."""
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._inflight = 0
        self._fetch_scope: CancelScope | None = None
        self._consumers_scope: CancelScope | None = None
        self._background: asyncio.Task[None] | None = None

    # -- control -----------------------------------------------------------------------------

    def stop(self, *, immediate: bool = False) -> None:
        """Stop fetching and drain; ``immediate`` cancels running tasks and hands them back now."""
        self._stopping.set()
        self._slot_free.set()
        if self._fetch_scope is not None:
            self._fetch_scope.cancel()
        if immediate and self._consumers_scope is not None:
            self._consumers_scope.cancel()

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        """Run until stopped (SIGTERM/SIGINT when handlers are installed); the seed's Launch()."""
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

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping.is_set():
            log.warning("%s again: cancelling %d running task(s) and handing them back", sig.name, self._inflight)
            self.stop(immediate=True)
            return
        log.warning("%s: stopping; %d task(s) in flight get %g s to finish (signal again to stop now)",
                    sig.name, self._inflight, self.grace_s)
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
        broker = self.app.broker
        if not await self._prepare(broker):
            return
        consumer = broker.consumer(self.queues, self.consumer_name, self.name)
        executor = Executor(self.app.registry, self.name, threads=self.concurrency)
        settler = Settler(broker, self)
        # XREADGROUP's COUNT applies per stream, so one fetch may bring up to count x queues.
        send, recv = anyio.create_memory_object_stream[Delivery](self.concurrency * len(self.queues))
        try:
            async with anyio.create_task_group() as side:
                side.start_soon(self._promote, broker)
                async with anyio.create_task_group() as consumers:
                    self._consumers_scope = consumers.cancel_scope
                    for _ in range(self.concurrency):
                        consumers.start_soon(self._consume, recv.clone(), executor, settler)
                    recv.close()
                    self._started.set()
                    async with send:
                        await self._fetch(consumer, send)
                    consumers.cancel_scope.deadline = anyio.current_time() + self.grace_s
                side.cancel_scope.cancel()
        finally:
            executor.threads.shutdown()
            with anyio.CancelScope(shield=True):
                await self._hand_back(consumer)
            if executor.threads.abandoned:
                log.warning("%d thread task(s) were abandoned still running", executor.threads.abandoned)

    async def _prepare(self, broker: Broker) -> bool:
        """Create the queues, waiting out an unreachable broker; False if stopped meanwhile."""
        backoff = Backoff(cap=10.0)
        while not self._stopping.is_set():
            try:
                await broker.ensure_queues(self.queues)
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

    async def _fetch(self, consumer: Consumer, send: MemoryObjectSendStream[Delivery]) -> None:
        backoff = Backoff()
        block_s = self.app.config.fetch_block_s
        while not self._stopping.is_set():
            free = await self._free_slots()
            if free == 0:
                continue
            deliveries: list[Delivery] = []
            with anyio.CancelScope() as scope:
                self._fetch_scope = scope
                if self._stopping.is_set():
                    scope.cancel()
                try:
                    deliveries = await consumer.fetch(free, block_s)
                    backoff.reset()
                except TRANSIENT_ERRORS as exc:
                    delay = backoff.next_delay()
                    log.warning("fetch failed (%s: %s); retrying in %.2f s", type(exc).__name__, exc, delay)
                    await anyio.sleep(delay)
            self._fetch_scope = None
            self._inflight += len(deliveries)
            for d in deliveries:
                await send.send(d)

    async def _free_slots(self) -> int:
        while self._inflight >= self.concurrency and not self._stopping.is_set():
            self._slot_free.clear()
            await self._slot_free.wait()
        return 0 if self._stopping.is_set() else self.concurrency - self._inflight

    async def _consume(self, recv: MemoryObjectReceiveStream[Delivery], executor: Executor,
                       settler: Settler) -> None:
        async with recv:
            async for d in recv:
                try:
                    settlement = await executor.run(d)
                    await settler.settle(d, settlement)
                finally:
                    self._inflight -= 1
                    self._slot_free.set()

    async def _promote(self, broker: Broker) -> None:
        backoff = Backoff()
        while True:
            try:
                await broker.promote_forever(self.queues)
            except Exception as exc:
                delay = backoff.next_delay()
                log.warning("delayed-task promoter failed (%s); restarting in %.2f s", exc, delay)
                with contextlib.suppress(Exception):
                    await anyio.sleep(delay)
