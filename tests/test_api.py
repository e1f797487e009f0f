"""The public API end to end: declaring tasks, sending them, results, task context, workers.

Each test runs on memory:// and on the real Redis (the ``app`` fixture), except the few that
need two processes' worth of Apps sharing one broker, which only Redis can give.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from aiocelery import (
    App,
    Arg,
    AsyncResult,
    Config,
    NotRegistered,
    ResultNotFound,
    ResultTimeout,
    Signature,
    Task,
    TaskContext,
    Worker,
    current_task,
)

from .conftest import make_config
from .helpers import eventually, raw_redis


def new_id() -> str:
    return f"api-{uuid.uuid4().hex}"


# -- declaring tasks ----------------------------------------------------------------------------


async def test_async_and_plain_def_tasks_run(app: App) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    @app.task
    def concat(a: str, b: str) -> str:
        return a + b

    assert isinstance(add, Task) and isinstance(concat, Task)
    assert add.is_async and not concat.is_async
    async with app.worker(concurrency=4):
        r1 = await add.delay(2, 3)
        r2 = await concat.delay("你好", b="世界")
        assert await r1.get(timeout=10) == 5
        assert await r2.get(timeout=10) == "你好世界"


def test_default_name_is_module_and_qualname() -> None:
    app = App(Config(broker="memory://"))

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task()
    def mul(a: int, b: int) -> int:
        return a * b

    assert add.name == "tests.test_api.test_default_name_is_module_and_qualname.<locals>.add"
    assert mul.name == "tests.test_api.test_default_name_is_module_and_qualname.<locals>.mul"
    assert add.name in app.registry and mul.name in app.registry
    assert app.registry[add.name] is add
    assert repr(add) == f"<Task {add.name}>"


async def test_tasks_can_still_be_called_directly(app: App) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @app.task
    def mul(a: int, b: int) -> int:
        return a * b

    assert await add(2, 3) == 5
    assert mul(4, 5) == 20
    assert add.__doc__ == "Add two numbers."
    assert add.__wrapped__ is not None


async def test_task_options_name_and_queue(app: App) -> None:
    @app.task(name="Fast", queue="fast", max_retries=2)
    async def fast(x: int) -> int:
        return x + 1

    @app.task(name="Default")
    def default(x: int) -> int:
        return x

    assert fast.name == "Fast" and fast.options.queue == "fast" and fast.options.max_retries == 2
    assert "Fast" in app.registry and "Default" in app.registry

    r_fast = await fast.delay(1)
    assert (await r_fast.record()).queue == "fast"
    async with app.worker(queues=["aiocelery"]):
        r_default = await default.delay(7)
        assert await r_default.get(timeout=10) == 7
        assert (await r_default.record()).queue == "aiocelery"
        assert await r_fast.state() == "PENDING"  # not this worker's queue
    async with app.worker(queues=["fast"]):
        assert await r_fast.get(timeout=10) == 2


async def test_register_tasks_like_the_seed(app: App) -> None:
    def add(a: int, b: int) -> int:
        return a + b

    async def multiply(a: int, b: int) -> int:
        return a * b

    tasks = app.register_tasks({"Add": add, "Multiply": multiply})
    assert sorted(tasks) == ["Add", "Multiply"]
    assert tasks["Add"].name == "Add" and tasks["Add"].fn is add
    assert list(app.registry) == ["Add", "Multiply"]
    assert len(app.registry) == 2

    async with app.worker():
        r_add = await app.send_task("Add", args=(1, 2))
        r_mul = await app.send_task("Multiply", args=[3, 4])
        r_kw = await tasks["Add"].delay(a=10, b=5)
        assert await r_add.get(timeout=10) == 3
        assert await r_mul.get(timeout=10) == 12
        assert await r_kw.get(timeout=10) == 15


def test_registry_refuses_a_second_function_under_a_taken_name() -> None:
    app = App(Config(broker="memory://"))

    def one() -> int:
        return 1

    def two() -> int:
        return 2

    app.register_tasks({"Same": one})
    app.register_tasks({"Same": one})  # the same function again is a no-op
    with pytest.raises(ValueError, match="Same"):
        app.register_tasks({"Same": two})
    assert app.registry["Same"].fn is one
    with pytest.raises(TypeError, match="not callable"):
        app.register_tasks({"Bad": 42})  # type: ignore[dict-item]


def test_registry_lookup_of_an_unknown_name() -> None:
    app = App(Config(broker="memory://"))
    app.register_tasks({"Known": lambda: 1})
    assert app.registry.get("Nope") is None
    assert "Nope" not in app.registry
    with pytest.raises(NotRegistered) as info:
        app.registry["Nope"]
    assert isinstance(info.value, KeyError)
    assert "'Nope'" in str(info.value) and "Known" in str(info.value)


# -- sending ------------------------------------------------------------------------------------


async def test_apply_async_with_args_kwargs_and_task_id(app: App) -> None:
    @app.task
    def power(base: int, exp: int = 2) -> int:
        return int(base**exp)

    task_id = new_id()
    async with app.worker():
        r = await power.apply_async((3,), {"exp": 3}, task_id=task_id)
        assert r.id == task_id
        assert r.name == power.name
        assert await r.get(timeout=10) == 27
        r2 = await power.apply_async([5])
        assert await r2.get(timeout=10) == 25
        assert r2.id != task_id


async def test_apply_async_countdown_delays_the_start(app: App) -> None:
    @app.task
    async def stamp() -> str:
        return "ran"

    async with app.worker():
        r = await stamp.apply_async(countdown=0.3)
        assert await r.get(timeout=10) == "ran"
    record = await r.record()
    # Broker time stamps: the start is never earlier than created + countdown.
    assert record.started_ms - record.created_ms >= 300


@pytest.mark.parametrize("tz", [UTC, timezone(timedelta(hours=8))], ids=["utc", "plus8"])
async def test_apply_async_eta_with_an_aware_datetime(app: App, tz: timezone) -> None:
    @app.task
    async def stamp() -> str:
        return "ran"

    eta = datetime.now(tz) + timedelta(milliseconds=300)
    async with app.worker():
        r = await stamp.apply_async(eta=eta)
        assert await r.get(timeout=10) == "ran"
    record = await r.record()
    assert record.started_ms >= int(eta.timestamp() * 1000)


async def test_apply_async_eta_in_the_past_runs_at_once(app: App) -> None:
    @app.task
    async def now() -> int:
        return 1

    async with app.worker():
        r = await now.apply_async(eta=datetime.now(UTC) - timedelta(hours=1))
        assert await r.get(timeout=10) == 1


async def test_apply_async_to_another_queue(app: App) -> None:
    @app.task
    async def where() -> str:
        ctx = current_task()
        assert ctx is not None
        return ctx.queue

    async with app.worker(queues=["side", "aiocelery"]):
        r = await where.apply_async(queue="side")
        assert await r.get(timeout=10) == "side"
        assert (await r.record()).queue == "side"


async def test_same_task_id_twice_runs_once(app: App) -> None:
    runs: list[int] = []

    @app.task(name="Count")
    async def count(n: int) -> int:
        runs.append(n)
        return n

    @app.task(name="Sentinel")
    async def sentinel() -> str:
        return "last"

    task_id = new_id()
    first = await count.apply_async((1,), task_id=task_id)
    second = await count.apply_async((2,), task_id=task_id)  # a re-send: same id, ignored
    assert first.id == second.id == task_id
    async with app.worker(concurrency=1):
        assert await first.get(timeout=10) == 1
        third = await count.apply_async((3,), task_id=task_id)  # after it finished: still ignored
        assert await third.get(timeout=10) == 1
        # FIFO with one slot: once the sentinel ran, any duplicate would have run too.
        assert await (await sentinel.delay()).get(timeout=10) == "last"
    assert runs == [1]


async def test_send_task_by_name_and_by_signature(app: App) -> None:
    @app.task(name="HelloWorld")
    def hello(name: str) -> str:
        return "你好" + name

    seen_types: list[type] = []

    @app.task(name="Double")
    def double(n: int, *, times: int = 2) -> int:
        seen_types.append(type(n))
        return n * times

    async with app.worker():
        r1 = await app.send_task(Signature("HelloWorld", args=[Arg("string", "国学大师")]))
        assert await r1.get(timeout=10) == "你好国学大师"
        r2 = await app.send_task("HelloWorld", args=["Go"])
        assert await r2.get(timeout=10) == "你好Go"
        r3 = await app.send_task(Signature("Double", args=[Arg("int64", "5")]))
        assert await r3.get(timeout=10) == 10
        r4 = await app.send_task(Signature("Double", args=[Arg("int64", "5")], kwargs={"times": Arg("int8", "3")}))
        assert await r4.get(timeout=10) == 15
        r5 = await app.send_task("Double", kwargs={"n": 4})
        assert await r5.get(timeout=10) == 8
    assert seen_types == [int, int, int]
    assert r1.name == "HelloWorld" and r3.name == "Double"


async def test_signature_options_travel_with_it(app: App) -> None:
    @app.task(name="Where")
    async def where() -> str:
        ctx = current_task()
        assert ctx is not None
        return ctx.queue

    task_id = new_id()
    sig = Signature("Where").set(queue="sigq", task_id=task_id, countdown=0.1)
    assert sig.queue == "sigq" and sig.name == "Where"
    async with app.worker(queues=["sigq"]):
        r = await app.send_task(sig)
        assert r.id == task_id
        assert await r.get(timeout=10) == "sigq"


def test_signature_needs_a_name_and_checks_typed_args() -> None:
    with pytest.raises(TypeError, match="name"):
        Signature("")
    with pytest.raises(TypeError, match=r"'Add'.*int8"):
        Signature("Add", args=[Arg("int8", 300)]).resolved()
    assert Signature("Add", args=[Arg("int64", "1"), 2], kwargs={"c": Arg("bool", True)}).resolved() == (
        [1, 2], {"c": True})


async def test_bad_typed_arg_fails_at_send(app: App) -> None:
    task_id = new_id()
    with pytest.raises(TypeError, match="HelloWorld"):
        await app.send_task(Signature("HelloWorld", args=[Arg("string", 42)], task_id=task_id))
    assert await app.backend.get_record(task_id) is None


# -- results ------------------------------------------------------------------------------------


async def test_async_result_state_and_ready(app: App) -> None:
    @app.task(name="Echo")
    async def echo(x: str) -> str:
        return x

    r = await echo.delay("hi")
    assert isinstance(r, AsyncResult)
    assert r.id and r.id in repr(r)
    assert await r.state() == "PENDING"
    assert await r.ready() is False
    async with app.worker():
        assert await r.get(timeout=10) == "hi"
    assert await r.state() == "SUCCESS"
    assert await r.ready() is True
    record = await r.record()
    assert (record.name, record.attempt) == ("Echo", 1)
    # get() again on a finished task returns the stored value at once.
    assert await r.get(timeout=10) == "hi"


async def test_app_async_result_from_a_bare_id(app: App) -> None:
    @app.task(name="Echo")
    async def echo(x: list[int]) -> list[int]:
        return x

    async with app.worker():
        r = await echo.delay([1, 2])
        await r.get(timeout=10)
    handle = app.AsyncResult(r.id)
    assert handle.id == r.id and handle.name == ""
    assert await handle.get(timeout=5) == [1, 2]
    assert await handle.state() == "SUCCESS"


async def test_async_result_from_a_second_app_like_another_process(redis_url: str, key_prefix: str) -> None:
    config = make_config("redis", redis_url, key_prefix, fetch_block_s=0.5)
    async with App(config) as producer, App(config) as observer:
        @producer.task(name="Echo")
        def echo(x: str) -> str:
            return x * 2

        pending = await echo.delay("ab")
        handle = observer.AsyncResult(pending.id)
        assert await handle.state() == "PENDING"
        waiter = asyncio.create_task(handle.get(timeout=10))  # waits in the other "process"
        async with producer.worker():
            assert await waiter == "abab"
        assert await observer.AsyncResult(pending.id).get(timeout=5) == "abab"
        assert await handle.ready()


async def test_another_prefix_does_not_see_the_task(redis_url: str, key_prefix: str) -> None:
    async with App(make_config("redis", redis_url, key_prefix)) as app, \
            App(make_config("redis", redis_url, key_prefix + "x")) as other:
        r = await app.send_task("Anything", args=[1])
        assert await app.AsyncResult(r.id).state() == "PENDING"
        with pytest.raises(ResultNotFound):
            await other.AsyncResult(r.id).get(timeout=5)


# -- the running task's context -----------------------------------------------------------------


async def test_current_task_in_async_and_thread_tasks(app: App) -> None:
    seen: dict[str, TaskContext | None] = {}
    threads: dict[str, int] = {}

    @app.task(name="CtxAsync")
    async def ctx_async() -> str:
        seen["async"] = current_task()
        threads["async"] = threading.get_ident()
        return "a"

    @app.task(name="CtxThread", queue="threads")
    def ctx_thread() -> str:
        seen["thread"] = current_task()
        threads["thread"] = threading.get_ident()
        return "t"

    assert current_task() is None
    async with app.worker("ctx-worker", queues=["aiocelery", "threads"]) as worker:
        ra = await ctx_async.delay()
        rt = await ctx_thread.delay()
        assert await ra.get(timeout=10) == "a"
        assert await rt.get(timeout=10) == "t"
    assert current_task() is None

    a, t = seen["async"], seen["thread"]
    assert a is not None and t is not None
    assert (a.id, a.name, a.queue, a.attempt, a.redelivered, a.worker) == (
        ra.id, "CtxAsync", "aiocelery", 1, False, worker.name)
    assert (t.id, t.name, t.queue, t.attempt, t.redelivered, t.worker) == (
        rt.id, "CtxThread", "threads", 1, False, "ctx-worker")
    # async def runs on the loop's thread, plain def in the worker's thread pool.
    assert threads["async"] == threading.get_ident()
    assert threads["thread"] != threading.get_ident()


async def test_concurrent_tasks_each_see_their_own_context(app: App) -> None:
    @app.task(name="Who")
    async def who(delay: float) -> str:
        await asyncio.sleep(delay)
        ctx = current_task()
        assert ctx is not None
        return ctx.id

    @app.task(name="WhoThread")
    def who_thread() -> str:
        ctx = current_task()
        assert ctx is not None
        return ctx.id

    async with app.worker(concurrency=20):
        results = [await who.delay(0.01 * (i % 5)) for i in range(15)]
        results += [await who_thread.delay() for _ in range(10)]
        values = await asyncio.gather(*(r.get(timeout=10) for r in results))
    assert values == [r.id for r in results]


async def test_a_worker_runs_as_many_tasks_at_once_as_its_concurrency(app: App) -> None:
    """Six tasks that each wait until all six run: a worker of concurrency 6 must start them all
    (on RabbitMQ, its prefetch must let it hold six unacknowledged messages, not a third of them)."""
    running = 0
    all_in = asyncio.Event()

    @app.task(name="Gate")
    async def gate(i: int) -> int:
        nonlocal running
        running += 1
        if running == 6:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 5)
        return i

    async with app.worker(concurrency=6):
        results = [await gate.delay(i) for i in range(6)]
        values = await asyncio.gather(*(r.get(timeout=10) for r in results))
    assert values == list(range(6)) and running == 6


async def test_record_names_the_worker_that_ran_it(app: App) -> None:
    @app.task(name="Named")
    async def named() -> str:
        ctx = current_task()
        assert ctx is not None
        return ctx.worker

    async with app.worker("named-worker"):
        r = await named.delay()
        assert await r.get(timeout=10) == "named-worker"
    assert (await r.record()).worker == "named-worker"


# -- apps and workers ---------------------------------------------------------------------------


async def newer_clients(probe: Any, since_id: int) -> int:
    """Connections Redis accepted after the one with id ``since_id`` (client ids only grow)."""
    return sum(1 for c in await probe.client_list() if int(c["id"]) > since_id)


async def test_async_with_app_closes_its_connections(redis_url: str, key_prefix: str) -> None:
    async with raw_redis(redis_url) as probe:
        since = int(await probe.client_id())
        async with App(make_config("redis", redis_url, key_prefix, fetch_block_s=0.5)) as app:
            @app.task(name="Ping")
            async def ping() -> str:
                return "pong"

            async with app.worker():
                assert await (await ping.delay()).get(timeout=10) == "pong"
            assert await newer_clients(probe, since) >= 2  # command pool and pub/sub hub are still open

        async def all_closed() -> bool:
            return await newer_clients(probe, since) == 0

        assert await eventually(all_closed)


async def test_result_used_after_close_leaks_no_connection(redis_url: str, key_prefix: str) -> None:
    app = App(make_config("redis", redis_url, key_prefix, fetch_block_s=0.5))

    @app.task(name="Ping")
    async def ping() -> str:
        return "pong"

    async with raw_redis(redis_url) as probe:
        since = int(await probe.client_id())
        async with app.worker():
            r = await ping.delay()
            assert await r.get(timeout=10) == "pong"
        await app.close()
        # the handle uses the app's current connections, so the next close() closes what it opened
        assert await r.get(timeout=5) == "pong"
        await app.close()

        async def all_closed() -> bool:
            return await newer_clients(probe, since) == 0

        assert await eventually(all_closed, timeout=2)


async def test_app_reconnects_after_close(app: App) -> None:
    @app.task(name="Ping")
    async def ping() -> str:
        return "pong"

    async with app.worker():
        assert await (await ping.delay()).get(timeout=10) == "pong"
    await app.close()
    await app.close()  # closing twice is fine
    async with app.worker():
        assert await (await ping.delay()).get(timeout=10) == "pong"


async def test_embedded_worker_processes_and_stops(app: App) -> None:
    @app.task(name="Square")
    def square(x: int) -> int:
        return x * x

    async with app.worker(concurrency=3) as worker:
        assert isinstance(worker, Worker)
        results = [await square.delay(i) for i in range(10)]
        assert [await r.get(timeout=10) for r in results] == [i * i for i in range(10)]
    assert (worker.processed, worker.failed, worker.released) == (10, 0, 0)

    # Stopped: nothing consumes the queue any more.
    late = await square.delay(3)
    with pytest.raises(ResultTimeout):
        await late.get(timeout=0.3)
    assert await late.state() == "PENDING"


async def test_worker_counts_processed_and_failed(app: App) -> None:
    @app.task(name="Ok")
    async def ok() -> int:
        return 1

    @app.task(name="Boom")
    async def boom() -> int:
        raise RuntimeError("boom")

    async with app.worker(concurrency=4) as worker:
        results = [await ok.delay() for _ in range(3)]
        results += [await boom.delay() for _ in range(2)]
        results.append(await app.send_task("NoSuchTask"))
        states = []
        for r in results:
            try:
                await r.get(timeout=10)
            except Exception as exc:  # TaskFailed / TaskDead, checked in test_errors
                states.append(type(exc).__name__)
            else:
                states.append("ok")
    assert states == ["ok", "ok", "ok", "TaskFailed", "TaskFailed", "TaskDead"]
    assert worker.processed == 6
    assert worker.failed == 3


async def test_worker_drains_in_flight_tasks_on_exit(app: App) -> None:
    started = asyncio.Event()

    @app.task(name="Slow")
    async def slow() -> str:
        started.set()
        await asyncio.sleep(0.2)
        return "finished"

    async with app.worker() as worker:
        r = await slow.delay()
        await asyncio.wait_for(started.wait(), 10)
    # The exit waited for the running task instead of dropping it.
    assert await r.state() == "SUCCESS"
    assert await r.get(timeout=5) == "finished"
    assert (worker.processed, worker.released) == (1, 0)


async def test_worker_hands_back_tasks_that_outlive_the_grace(app: App) -> None:
    started = asyncio.Event()
    attempts: list[tuple[int, bool]] = []

    @app.task(name="Stubborn")
    async def stubborn() -> int:
        ctx = current_task()
        assert ctx is not None
        attempts.append((ctx.attempt, ctx.redelivered))
        if ctx.attempt == 1:
            started.set()
            await asyncio.Event().wait()  # never finishes on its own
        return ctx.attempt

    async with app.worker(shutdown_grace_s=0.1) as first:
        r = await stubborn.delay()
        await asyncio.wait_for(started.wait(), 10)
    assert first.released == 1
    assert first.processed == 0
    assert await r.state() == "PENDING"  # handed back, neither failed nor crashed

    async with app.worker() as second:
        assert await r.get(timeout=10) == 2
    assert attempts == [(1, False), (2, True)]
    assert second.processed == 1


async def test_worker_run_until_stop(app: App) -> None:
    @app.task(name="Ping")
    async def ping() -> str:
        return "pong"

    worker = app.worker("runner", concurrency=2)
    assert (worker.name, worker.concurrency, worker.queues) == ("runner", 2, ["aiocelery"])
    running = asyncio.create_task(worker.run(install_signal_handlers=False))
    r = await ping.delay()
    assert await r.get(timeout=10) == "pong"
    worker.stop()
    await asyncio.wait_for(running, 10)
    assert worker.processed == 1


def test_worker_needs_positive_concurrency() -> None:
    app = App(Config(broker="memory://"))
    with pytest.raises(ValueError, match="concurrency"):
        app.worker(concurrency=0)


def test_app_repr_hides_the_password() -> None:
    app = App(Config(broker="redis://:s3cret@127.0.0.1:6390/0"))
    assert "s3cret" not in repr(app)
    assert "***" in repr(app)


async def test_two_workers_share_a_queue_and_run_each_task_once(app: App) -> None:
    runs: list[tuple[str, str]] = []

    @app.task(name="Job")
    async def job(n: int) -> int:
        await asyncio.sleep(0.005)
        ctx = current_task()
        assert ctx is not None
        runs.append((ctx.id, ctx.worker))
        return n

    async with app.worker("w1", concurrency=3) as w1, app.worker("w2", concurrency=3) as w2:
        results = [await job.delay(i) for i in range(40)]
        assert await asyncio.gather(*(r.get(timeout=10) for r in results)) == list(range(40))
    assert sorted(task_id for task_id, _ in runs) == sorted(r.id for r in results)
    assert w1.processed + w2.processed == 40


async def test_task_returning_none(app: App) -> None:
    @app.task(name="Nothing")
    def nothing() -> None:
        return None

    async with app.worker():
        r = await nothing.delay()
        value: object = await app.AsyncResult(r.id).get(timeout=10)
        assert value is None
    assert await r.state() == "SUCCESS"


async def test_idle_worker_starts_and_stops_cleanly(app: App) -> None:
    async with app.worker(concurrency=5) as worker:
        pass
    assert (worker.processed, worker.failed, worker.released) == (0, 0, 0)
    assert worker.queues == [app.config.default_queue]
