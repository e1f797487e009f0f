"""Leases, reclaim, lost leases, time limits and drain limits, with embedded workers on a real Redis."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from aiocelery import App, TaskFailed, current_task
from aiocelery.brokers.redis.keys import GROUP, Keys
from aiocelery.worker.fetcher import Fetcher, Slots

from .conftest import make_config
from .helpers import eventually, raw_redis
from .redis_server import RedisServer


def short_lease_app(redis_url: str, key_prefix: str, **changes: object) -> App:
    return App(make_config("redis", redis_url, key_prefix, fetch_block_s=0.2, lease_s=1.2,
                           reclaim_interval_s=0.3, **changes))


async def test_running_task_keeps_its_lease_past_the_lease_time(redis_url: str, key_prefix: str) -> None:
    app = short_lease_app(redis_url, key_prefix)
    other = short_lease_app(redis_url, key_prefix)
    runs: list[int] = []

    @app.task(name="long")
    async def long() -> str:
        ctx = current_task()
        assert ctx is not None
        runs.append(ctx.attempt)
        await asyncio.sleep(3.0)  # 2.5 leases: only renewal keeps it
        return "done"

    other.register_tasks({"long": long.fn})
    async with app, other, app.worker(concurrency=2), other.worker(concurrency=2):
        result = await long.delay()
        assert await result.get(timeout=15) == "done"
    assert runs == [1], "a renewed lease must not be reclaimed by another worker"


async def test_dead_workers_delivery_is_reclaimed_and_counted_as_a_crash(redis_url: str, key_prefix: str) -> None:
    app = short_lease_app(redis_url, key_prefix)
    seen: list[tuple[int, bool]] = []

    @app.task(name="job")
    async def job(x: int) -> int:
        ctx = current_task()
        assert ctx is not None
        seen.append((ctx.attempt, ctx.redelivered))
        return x * 2

    async with app:
        result = await job.delay(21)
        await app.broker.ensure_queues([app.config.default_queue])
        # a "worker" that takes the delivery, starts it and dies: nothing renews its lease
        doomed = app.broker.consumer([app.config.default_queue], "doomed:1:x", "doomed")
        taken = await doomed.fetch(1, 1.0)
        assert [d.task_id for d in taken] == [result.id]
        await doomed.close()
        async with app.worker(concurrency=2):
            assert await result.get(timeout=15) == 42
        record = await result.record()
        async with raw_redis(redis_url) as r:
            crashes = int(await r.hget(Keys(key_prefix).task(result.id), "crashes") or 0)
            pending = await r.xpending(Keys(key_prefix).stream(app.config.default_queue), GROUP)
    assert seen == [(2, True)]
    assert record.attempt == 2
    assert crashes == 1
    assert pending["pending"] == 0


async def test_poison_task_is_dead_lettered_after_max_crashes(redis_url: str, key_prefix: str) -> None:
    app = short_lease_app(redis_url, key_prefix, max_crashes=1)
    ran: list[int] = []

    @app.task(name="never")
    async def never() -> None:
        ran.append(1)

    async with app:
        result = await never.delay()
        queue = app.config.default_queue
        await app.broker.ensure_queues([queue])
        for i in range(2):  # two workers take it and die
            doomed = app.broker.consumer([queue], f"doomed:{i}:x", "doomed")
            taken = await doomed.reclaim(1, 0.0) or await doomed.fetch(1, 1.0)
            assert [d.task_id for d in taken] == [result.id]
            await doomed.close()
        # the third start would be crash number 2 > max_crashes 1: dead-lettered, never run
        async with app.worker(concurrency=1):
            async def dead() -> bool:
                return (await result.state()) == "DEAD"
            assert await eventually(dead, timeout=10)
        letters = await app.connections.operations.dead_letters(queue)
    assert ran == []
    assert [d.task_id for d in letters] == [result.id]
    assert "crashed its worker 2 times" in letters[0].reason


async def test_lost_lease_cancels_the_local_run(redis_url: str, key_prefix: str) -> None:
    app = short_lease_app(redis_url, key_prefix)
    cancelled = asyncio.Event()

    @app.task(name="hang")
    async def hang() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with app, app.worker(concurrency=1):
        result = await hang.delay()

        async def started() -> bool:
            return (await result.state()) == "STARTED"

        assert await eventually(started, timeout=5)
        thief = app.broker.consumer([app.config.default_queue], "thief:1:x", "thief")
        stolen = await thief.reclaim(1, 0.0)  # takes it over regardless of idle time
        assert [d.task_id for d in stolen] == [result.id]
        await asyncio.wait_for(cancelled.wait(), 5)  # the lease thread noticed within lease/3
        await thief.close()


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_time_limit_cancels_async_and_abandons_thread_tasks(kind: str, redis_url: str, key_prefix: str) -> None:
    app = App(make_config(kind, redis_url, key_prefix, fetch_block_s=0.2))

    @app.task(name="slow_async", time_limit_s=0.2)
    async def slow_async() -> None:
        await asyncio.sleep(10)

    @app.task(name="slow_thread", time_limit_s=0.2)
    def slow_thread() -> None:
        time.sleep(1.5)

    async with app, app.worker(concurrency=2):
        for task, how in ((slow_async, "cancelled"), (slow_thread, "abandoned")):
            result = await task.delay()
            with pytest.raises(TaskFailed) as info:
                await result.get(timeout=10)
            assert info.value.exc_type == "TimeLimitExceeded"
            assert f"time limit of 0.2 s and was {how}" in info.value.exc_message


async def test_max_tasks_drains_and_stops_the_worker(redis_url: str, key_prefix: str) -> None:
    app = App(make_config("redis", redis_url, key_prefix, fetch_block_s=0.2))

    @app.task(name="one")
    async def one(x: int) -> int:
        return x

    async with app:
        results = [await one.delay(i) for i in range(5)]
        worker = app.worker(concurrency=1, max_tasks=3)
        await asyncio.wait_for(worker.run(install_signal_handlers=False), 15)
        states = [await r.state() for r in results]
    assert worker.processed == 3
    assert worker.exit_code == 0
    assert states.count("SUCCESS") == 3
    assert states.count("PENDING") == 2, "the rest stays queued for the restarted worker"


async def test_blocked_loop_is_named_by_the_watchdog(redis_url: str, key_prefix: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    app = App(make_config("redis", redis_url, key_prefix, fetch_block_s=0.2, blocked_loop_warn_s=0.2))

    @app.task(name="blocker")
    async def blocker() -> str:
        time.sleep(0.8)  # noqa: ASYNC251 - blocks the event loop on purpose
        return "ok"

    async with app, app.worker(concurrency=1):
        result = await blocker.delay()
        assert await result.get(timeout=10) == "ok"
    messages = [r.getMessage() for r in caplog.records if "event loop blocked" in r.getMessage()]
    assert messages, "the watchdog must warn"
    assert f"task blocker[{result.id}]" in messages[0]
    assert "time.sleep(0.8)" in messages[0]


async def test_deliveries_already_in_a_crash_are_reclaimed_one_at_a_time_and_run_alone(
        redis_url: str, key_prefix: str) -> None:
    """Three tasks died twice together (as beside a task that kills its worker): a fetcher takes
    them back one at a time, and after each it fetches nothing more until its worker is idle."""
    app = short_lease_app(redis_url, key_prefix)

    @app.task(name="job")
    async def job(x: int) -> int:
        return x

    async with app:
        await app.broker.ensure_queues([app.config.default_queue])
        sent = [await job.delay(i) for i in range(3)]
        first = app.broker.consumer([app.config.default_queue], "doomed:1:x", "doomed")
        assert len(await first.fetch(3, 1.0)) == 3  # all three started together, then the worker dies
        await first.close()
        second = app.broker.consumer([app.config.default_queue], "doomed:2:x", "doomed")
        again = await second.reclaim(3, 0.0)  # a whole batch taken over and started: died together again
        assert sorted(d.crashes for d in again) == [1, 1, 1]
        await second.close()
        await asyncio.sleep(1.1)  # past the rescuer's lease: they look expired
        rescuer = app.broker.consumer([app.config.default_queue], "rescuer:1:x", "rescuer")
        slots, ready, stopping = Slots(4), asyncio.Queue[object](), asyncio.Event()
        # lease 1 s: long enough that the rescuer's own (unrenewed) deliveries don't expire again
        fetcher = Fetcher(rescuer, slots, block_s=0.05, lease_s=1.0, reclaim_interval_s=0.05,
                          leases_healthy=lambda: True)
        running = asyncio.ensure_future(fetcher.run(ready, stopping))  # type: ignore[arg-type]
        try:
            took = []
            for _ in range(3):
                d = await asyncio.wait_for(ready.get(), 2.0)
                took.append(d)
                assert d.crashes == 2, d
                # runs alone: the fetcher waits for the worker to be idle. Holding back shows no
                # outward sign; a fetcher that did not would take the next one within a round trip
                # (its reclaim is due at once), so 0.25 s is ample. It must stay under the 1 s lease:
                # after that the fetcher stops waiting for idle by design.
                await asyncio.sleep(0.25)
                assert ready.empty(), "fetched more while a twice-crashed delivery ran"
                slots.give()
            assert sorted(d.task_id for d in took) == sorted(r.id for r in sent)
        finally:
            await stop_fetcher(fetcher, slots, stopping, running)
            await rescuer.close()


async def test_an_idle_worker_back_from_an_outage_lets_busy_workers_renew_first(tmp_path: Path,
                                                                                 key_prefix: str) -> None:
    """After an outage longer than a lease, every running delivery looks expired. A worker that
    holds none renews nothing, so only its fetches tell it of the outage: it must still wait a
    renewal interval before reclaiming, or it takes over a busy worker's running task."""
    server = RedisServer(persistent=True, workdir=tmp_path).start()
    app = short_lease_app(server.url, key_prefix)

    @app.task(name="job")
    async def job() -> None:
        return None

    try:
        async with app:
            await app.broker.ensure_queues([app.config.default_queue])
            sent = await job.delay()
            busy = app.broker.consumer([app.config.default_queue], "busy:1:x", "busy")
            [running] = await busy.fetch(1, 1.0)  # started by a worker that goes on running it
            keeper = busy.lease_keeper()
            idle = app.broker.consumer([app.config.default_queue], "idle:1:x", "idle")
            slots, ready, stopping = Slots(4), asyncio.Queue[object](), asyncio.Event()
            fetcher = Fetcher(idle, slots, block_s=0.05, lease_s=1.2, reclaim_interval_s=0.05,
                              leases_healthy=lambda: True)  # holds nothing: its lease thread sees no outage
            loop = asyncio.get_running_loop()
            fetching = asyncio.ensure_future(fetcher.run(ready, stopping))  # type: ignore[arg-type]
            try:
                server.stop()
                assert await eventually(lambda: _true(fetcher.outage))
                await asyncio.sleep(1.5)  # the outage outlasts the lease: the delivery looks expired
                await loop.run_in_executor(None, server.start)
                assert await eventually(lambda: _true(not fetcher.outage), timeout=10)
                # the busy worker's lease thread renews within its interval (lease / 3) of the return
                assert await loop.run_in_executor(None, keeper.renew, [running]) == []
                await asyncio.sleep(1.0)  # past the idle worker's wait, well inside the renewed lease
                assert ready.empty(), "the idle worker took over a running task"
                assert (await sent.record()).attempt == 1
            finally:
                await stop_fetcher(fetcher, slots, stopping, fetching)
                await idle.close()
                await busy.close()
                keeper.close()
    finally:
        server.close()


async def _true(value: bool) -> bool:
    return value


async def stop_fetcher(fetcher: Fetcher, slots: Slots, stopping: asyncio.Event, running: asyncio.Future[None]) -> None:
    """Stop a fetcher a test runs by hand, as the worker does at shutdown."""
    stopping.set()
    fetcher.interrupt()
    slots.wake()
    await asyncio.wait_for(running, 5.0)
