"""Every error a caller can meet, with the exception, the names in its message and what was stored.

Runs on memory:// and on the real Redis. "Nothing written" is checked where it is cheap to be
sure: no record for the explicit task id, and no keys at all under the test's prefix.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from aiocelery import (
    AioCeleryError,
    App,
    Config,
    EncodeError,
    ResultError,
    ResultNotFound,
    ResultTimeout,
    SendError,
    TaskArgumentsError,
    TaskDead,
    TaskError,
    TaskFailed,
)
from aiocelery.brokers.base import Outgoing
from aiocelery.wire.message import TaskMessage

from .conftest import make_config
from .helpers import Apps, created, dead_letters, memory_store, raw_redis
from .redis_server import free_port


@pytest.fixture
async def apps(kind: str, redis_url: str, key_prefix: str) -> AsyncIterator[Apps]:
    async with Apps(kind, redis_url, key_prefix) as factory:
        yield factory


def new_id() -> str:
    return f"err-{uuid.uuid4().hex}"


async def nothing_written(app: App) -> bool:
    """True when the app's broker holds no task at all (memory) / no key under its prefix (Redis)."""
    if app.config.is_memory:
        store = memory_store(app)
        return not store.records and not any(store.ready.values()) and not any(store.delayed.values())
    async with raw_redis(app.config.backend_url) as client:
        keys: list[Any] = [k async for k in client.scan_iter(match=f"{app.config.key_prefix}:*")]
    return keys == []


# -- a task that raises -------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["async", "thread"])
async def test_task_raising_stores_failure_with_traceback(app: App, style: str) -> None:
    if style == "async":
        @app.task(name="Explode")
        async def explode_async(x: int) -> int:
            raise ValueError(f"cannot take {x}")
    else:
        @app.task(name="Explode")
        def explode_thread(x: int) -> int:
            raise ValueError(f"cannot take {x}")
    function = "explode_async" if style == "async" else "explode_thread"

    async with app.worker():
        r = await app.send_task("Explode", args=[7])
        with pytest.raises(TaskFailed) as info:
            await r.get(timeout=10)

    err = info.value
    assert isinstance(err, TaskError) and isinstance(err, AioCeleryError)
    assert (err.task_id, err.task_name) == (r.id, "Explode")
    assert (err.exc_type, err.exc_message) == ("ValueError", "cannot take 7")
    assert "Traceback" in err.remote_traceback
    assert function in err.remote_traceback
    assert "ValueError: cannot take 7" in err.remote_traceback
    assert "Explode" in str(err) and r.id in str(err) and "cannot take 7" in str(err)

    record = await r.record()
    assert record.state == "FAILURE"
    assert record.attempt == 1
    assert record.error is not None
    assert (record.error.type, record.error.message) == ("ValueError", "cannot take 7")
    assert function in record.error.traceback
    assert await dead_letters(app, "aiocelery") == []


async def test_custom_exception_type_name_is_reported(app: App) -> None:
    class PaymentDeclined(Exception):
        pass

    @app.task(name="Pay")
    async def pay() -> None:
        raise PaymentDeclined("card expired")

    async with app.worker():
        r = await pay.delay()
        with pytest.raises(TaskFailed) as info:
            await r.get(timeout=10)
    assert info.value.exc_type.endswith("PaymentDeclined")
    assert info.value.exc_message == "card expired"


# -- arguments that don't bind ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((1, 2, 3), {}), ((1,), {"c": 3}), ((), {"a": 1, "a2": 2})],
    ids=["missing", "too-many", "unknown-kw", "wrong-names"],
)
async def test_arguments_that_do_not_bind_fail_at_send(
        app: App, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    @app.task(name="Add")
    async def add(a: int, b: int) -> int:
        return a + b

    task_id = new_id()
    with pytest.raises(TaskArgumentsError) as info:
        await add.apply_async(args, kwargs, task_id=task_id)
    assert isinstance(info.value, TypeError) and isinstance(info.value, AioCeleryError)
    message = str(info.value)
    assert "'Add'" in message and task_id in message and "Nothing was sent" in message
    assert await app.backend.get_record(task_id) is None
    assert await nothing_written(app)

    # send_task by name goes through the same check when this app knows the task.
    with pytest.raises(TaskArgumentsError, match="Add"):
        await app.send_task("Add", args=args, kwargs=kwargs, task_id=task_id)
    assert await nothing_written(app)


async def test_delay_with_bad_arguments_fails_at_send(app: App) -> None:
    @app.task
    def greet(name: str, *, polite: bool = True) -> str:
        return name

    with pytest.raises(TaskArgumentsError, match="greet"):
        await greet.delay("x", True)  # type: ignore[call-arg]
    assert await nothing_written(app)


async def test_by_name_send_with_bad_arguments_fails_at_the_worker(app: App) -> None:
    # The sender does not know the task yet (as a client without the worker's code would not),
    # so the arguments can only be checked where the task is known: at the worker, once.
    r = await app.send_task("Late", args=[1, 2, 3])
    calls: list[int] = []

    @app.task(name="Late")
    def late(a: int) -> int:
        calls.append(a)
        return a

    async with app.worker():
        with pytest.raises(TaskFailed) as info:
            await r.get(timeout=10)
    assert info.value.exc_type == "TaskArgumentsError"
    assert "Late" in info.value.exc_message
    assert calls == []
    record = await r.record()
    assert (record.state, record.attempt) == ("FAILURE", 1)


async def test_by_name_send_from_a_client_app_without_the_task(redis_url: str, key_prefix: str) -> None:
    config = make_config("redis", redis_url, key_prefix, fetch_block_s=0.5)
    async with App(config) as client, App(config) as server:
        @server.task(name="Add")
        def add(a: int, b: int) -> int:
            return a + b

        assert "Add" not in client.registry
        good = await client.send_task("Add", args=[1, 2])
        bad = await client.send_task("Add", args=[1], kwargs={"c": 5})
        async with server.worker():
            assert await good.get(timeout=10) == 3
            with pytest.raises(TaskFailed) as info:
                await bad.get(timeout=10)
        assert info.value.exc_type == "TaskArgumentsError"
        assert info.value.task_name == "Add"
        record = await bad.record()
        assert (record.state, record.attempt) == ("FAILURE", 1)


# -- unknown task names -------------------------------------------------------------------------


async def test_unknown_task_is_dead_lettered_not_dropped(app: App) -> None:
    @app.task(name="Known")
    async def known() -> int:
        return 1

    async with app.worker():
        r = await app.send_task("NoSuchTask", args=[1], kwargs={"k": "v"})
        with pytest.raises(TaskDead) as info:
            await r.get(timeout=10)
        assert await (await known.delay()).get(timeout=10) == 1  # the worker goes on

    err = info.value
    assert isinstance(err, TaskError)
    assert (err.task_id, err.task_name) == (r.id, "NoSuchTask")
    assert "NoSuchTask" in str(err) and r.id in str(err)
    assert "NoSuchTask" in err.reason and "Known" in err.reason  # says what the worker does know
    assert await r.state() == "DEAD"
    letters = await dead_letters(app, "aiocelery")
    assert [(e["id"], e["name"]) for e in letters] == [(r.id, "NoSuchTask")]
    assert "NoSuchTask" in letters[0]["reason"]


# -- messages a worker cannot run --------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "why"),
    [(b"\xff not json", "not JSON"), (b'{"v": 1}', "lacks"), (b'{"v": 99, "args": [], "kwargs": {}}', "version"),
     (b"[1, 2]", "not a JSON object")],
    ids=["garbage", "missing-fields", "wrong-version", "not-an-object"],
)
async def test_undecodable_message_is_dead_lettered(app: App, payload: bytes, why: str) -> None:
    calls: list[Any] = []

    @app.task(name="Known")
    async def known(*args: Any, **kwargs: Any) -> int:
        calls.append(args)
        return 1

    task_id = new_id()
    message = TaskMessage(id=task_id, name="Known", queue="aiocelery")
    assert created(await app.broker.publish([Outgoing(message, payload)])) == [True]
    async with app.worker():
        with pytest.raises(TaskDead) as info:
            await app.AsyncResult(task_id).get(timeout=10)
        assert await (await known.delay()).get(timeout=10) == 1  # the worker goes on
    assert "undecodable" in info.value.reason and why in info.value.reason
    assert calls == [()]
    letters = await dead_letters(app, "aiocelery")
    assert [e["id"] for e in letters] == [task_id]
    assert "undecodable" in letters[0]["reason"]


async def test_task_raising_cancelled_error_does_not_stop_the_worker(app: App) -> None:
    @app.task(name="Cancelled")
    async def cancelled() -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    @app.task(name="After")
    async def after() -> str:
        return "still consuming"

    async with app.worker(concurrency=4):
        r = await cancelled.delay()
        nxt = await after.delay()
        assert await nxt.get(timeout=1) == "still consuming"
        with pytest.raises(TaskFailed):
            await r.get(timeout=1)


# -- values that cannot travel ------------------------------------------------------------------


BAD_VALUES: list[tuple[str, Any]] = [
    ("set", {1, 2}),
    ("frozenset", frozenset({1})),
    ("bytes", b"raw"),
    ("bytearray", bytearray(b"raw")),
    ("nan", float("nan")),
    ("inf", float("inf")),
    ("-inf", float("-inf")),
    ("huge-int", 2**70),
    ("int64-overflow", 2**63),
    ("int64-underflow", -(2**63) - 1),
    ("datetime", datetime.now(UTC)),
    ("int-key", {1: "one"}),
    ("object", object()),
    ("nested-list", [1, [2, [3, {4, 5}]]]),
    ("nested-dict", {"a": {"b": [1, float("nan")]}}),
    ("nested-key", [{"ok": {(1, 2): "tuple key"}}]),
]


@pytest.mark.parametrize("value", [v for _, v in BAD_VALUES], ids=[n for n, _ in BAD_VALUES])
async def test_unsupported_values_fail_at_send(app: App, value: Any) -> None:
    @app.task(name="Take")
    async def take(x: Any) -> None:
        return None

    for send in ("args", "kwargs"):
        task_id = new_id()
        with pytest.raises(EncodeError) as info:
            if send == "args":
                await take.apply_async((value,), task_id=task_id)
            else:
                await take.apply_async(kwargs={"x": value}, task_id=task_id)
        assert isinstance(info.value, ValueError)
        message = str(info.value)
        assert "'Take'" in message and task_id in message and "nothing was sent" in message
        assert send in message  # the path to the bad value
        assert await app.backend.get_record(task_id) is None
    assert await nothing_written(app)


async def test_unsupported_values_fail_at_send_by_name(app: App) -> None:
    task_id = new_id()
    with pytest.raises(EncodeError, match="Unregistered"):
        await app.send_task("Unregistered", args=[{"when": datetime.now(UTC)}], task_id=task_id)
    assert await nothing_written(app)


async def test_values_at_the_edges_are_accepted(app: App) -> None:
    @app.task(name="Echo")
    async def echo(x: Any) -> Any:
        return x

    value = {"max": 2**63 - 1, "min": -(2**63), "float": 1.5e300, "tiny": -0.0, "text": "国学\u0000",
             "nested": [[], {}, None, True, False]}
    async with app.worker():
        assert await (await echo.delay(value)).get(timeout=10) == value
        assert await (await echo.delay((1, 2))).get(timeout=10) == [1, 2]  # tuples arrive as lists


async def test_oversized_payload_fails_at_send(apps: Apps) -> None:
    app = apps(max_payload_bytes=100)

    @app.task(name="Big")
    async def big(data: str) -> int:
        return len(data)

    task_id = new_id()
    with pytest.raises(EncodeError) as info:
        await big.apply_async(("x" * 200,), task_id=task_id)
    message = str(info.value)
    assert "'Big'" in message and task_id in message and "100" in message and "max_payload_bytes" in message
    assert await nothing_written(app)

    async with app.worker():
        assert await (await big.delay("small")).get(timeout=10) == 5


async def test_non_serializable_return_value_is_a_failure(app: App) -> None:
    @app.task(name="ReturnsSet")
    async def returns_set() -> set[int]:
        return {1, 2}

    @app.task(name="ReturnsNaN")
    def returns_nan() -> float:
        return math.nan

    async with app.worker():
        for task in (returns_set, returns_nan):
            r = await task.delay()
            with pytest.raises(TaskFailed) as info:
                await r.get(timeout=10)
            assert info.value.exc_type == "EncodeError"
            assert task.name in info.value.exc_message and "return value" in info.value.exc_message
            assert (await r.record()).state == "FAILURE"


# -- results that cannot be had -----------------------------------------------------------------


async def test_get_on_an_id_never_sent_raises_not_found(app: App) -> None:
    task_id = new_id()
    with pytest.raises(ResultNotFound) as info:
        await app.AsyncResult(task_id).get(timeout=30)  # at once; a hang would hit pytest's timeout
    assert isinstance(info.value, ResultError)
    assert info.value.task_id == task_id and task_id in str(info.value)
    with pytest.raises(ResultNotFound):
        await app.AsyncResult(task_id).state()
    with pytest.raises(ResultNotFound):
        await app.AsyncResult(task_id).get()  # no timeout at all: still no hang


async def test_get_with_no_worker_times_out(app: App) -> None:
    @app.task(name="Nobody")
    async def nobody() -> None:
        return None

    r = await nobody.delay()
    with pytest.raises(ResultTimeout) as info:
        await r.get(timeout=0.3)
    err = info.value
    assert isinstance(err, TimeoutError) and isinstance(err, ResultError)
    assert err.task_id == r.id and r.id in str(err)
    assert err.state == "PENDING"
    assert await r.state() == "PENDING"  # the task itself goes on waiting


async def test_get_with_zero_timeout_returns_a_finished_result(app: App) -> None:
    @app.task(name="Quick")
    async def quick() -> int:
        return 5

    async with app.worker():
        r = await quick.delay()
        assert await r.get(timeout=10) == 5
    assert await r.get(timeout=0) == 5


# -- bad send options ---------------------------------------------------------------------------


async def test_naive_eta_fails_at_send(app: App) -> None:
    @app.task(name="Later")
    async def later() -> None:
        return None

    task_id = new_id()
    with pytest.raises(EncodeError) as info:
        await later.apply_async(eta=datetime.now(), task_id=task_id)
    assert isinstance(info.value, ValueError)
    assert "naive" in str(info.value) and "'Later'" in str(info.value) and task_id in str(info.value)
    assert await nothing_written(app)


async def test_send_to_an_unreachable_redis_raises_send_error() -> None:
    port = free_port()
    config = Config(broker=f"redis://:hunter2@127.0.0.1:{port}/0", send_timeout_s=1)
    async with App(config) as app:
        @app.task(name="Lost")
        async def lost() -> None:
            return None

        task_id = new_id()
        with pytest.raises(SendError) as info:
            await lost.apply_async(task_id=task_id)
    err = info.value
    assert isinstance(err, AioCeleryError)
    assert (err.task_name, err.task_id) == ("Lost", task_id)
    message = str(err)
    assert "'Lost'" in message and task_id in message and str(port) in message
    assert "hunter2" not in message  # the URL is redacted
    assert f"task_id={task_id!r}" in message  # says how to re-send safely
