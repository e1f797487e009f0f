"""``app.send_many``: the bulk path, on memory:// and on the real Redis.

It validates every signature before sending any, keeps the order of its handles, is idempotent
per task id like every send, honours each signature's own options, and sends signatures with
links or errbacks through the workflow path instead of dropping them.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from aiocelery import App, Arg, EncodeError, Signature, TaskArgumentsError

from .helpers import eventually, memory_store, raw_redis


async def queued(app: App, queue: str = "aiocelery") -> int:
    """How many deliveries wait in ``queue``, read behind the broker's back."""
    if app.config.broker.startswith("memory"):
        return len(memory_store(app).ready.get(queue, ()))
    if app.config.is_amqp:
        return (await app.connections.operations.queue_stats(queue)).waiting
    async with raw_redis(app.config.backend_url) as r:
        return int(await r.xlen(f"{app.config.key_prefix}:{{{queue}}}:stream"))


async def test_results_come_back_in_order(app: App) -> None:
    @app.task(name="Double")
    async def double(x: int) -> int:
        return 2 * x

    results = await app.send_many([double.s(i) for i in range(2500)], chunk=300)  # chunks of 300, 256 per call
    assert len({r.id for r in results}) == 2500
    assert all(r.name == "Double" for r in results)
    async with app.worker(concurrency=50):
        values = [await r.get(timeout=30) for r in results]
    assert values == [2 * i for i in range(2500)]
    assert await queued(app) == 0  # every entry acknowledged and deleted (settles batch both per stream)
    if app.config.broker.startswith("redis"):
        async with raw_redis(app.config.backend_url) as r:
            pending = await r.xpending(f"{app.config.key_prefix}:{{aiocelery}}:stream", "aiocelery")
            assert pending["pending"] == 0, pending


@pytest.mark.parametrize("bad", ["bad arguments", "a set", "an int over 64 bits"])
async def test_one_bad_signature_sends_nothing(app: App, bad: str) -> None:
    @app.task(name="One")
    async def one(x: Any) -> Any:
        return x

    sigs = [one.s(i) for i in range(300)]
    sigs[217] = {"bad arguments": one.s(1, 2), "a set": one.s({1}), "an int over 64 bits": one.s(2**70)}[bad]
    with pytest.raises((TaskArgumentsError, EncodeError)) as caught:
        await app.send_many(sigs)
    assert "'One'" in str(caught.value) and "id " in str(caught.value)
    assert await queued(app) == 0


async def test_sending_the_same_ids_again_creates_nothing(app: App) -> None:
    @app.task(name="Once")
    async def once(x: int) -> int:
        return x

    ids = [f"bulk-{uuid.uuid4().hex}" for _ in range(50)]
    first = await app.send_many([once.s(i).set(task_id=ids[i]) for i in range(50)])
    again = await app.send_many([once.s(100 + i).set(task_id=ids[i]) for i in range(50)])
    assert [r.id for r in first] == [r.id for r in again] == ids
    assert await queued(app) == 50
    async with app.worker(concurrency=10):
        assert [await r.get(timeout=10) for r in again] == list(range(50))  # the first send's arguments


async def test_each_signature_keeps_its_own_options(app: App) -> None:
    @app.task(name="Where")
    async def where(x: int) -> int:
        return x

    results = await app.send_many([where.s(1), where.s(2).set(queue="other"), where.s(3).set(countdown=60),
                                   Signature("Where", args=[Arg("int64", 4)])])
    assert await queued(app) == 2  # the default queue: 1 and 4; "other" has 2; 3 waits 60 s
    assert await queued(app, "other") == 1
    assert [await r.state() for r in results] == ["PENDING"] * 4
    async with app.worker(concurrency=4, queues=["aiocelery", "other"]):
        assert [await r.get(timeout=10) for r in (results[0], results[1], results[3])] == [1, 2, 4]
    record = await results[2].record()
    assert (record.state, record.attempt) == ("PENDING", 0)  # no attempt yet: absent reads as 0


async def test_arguments_that_are_not_a_list_still_travel_as_one(app: App) -> None:
    @app.task(name="Chars")
    async def chars(*letters: str) -> str:
        return "-".join(letters)

    [result] = await app.send_many([Signature("Chars", args="abc")])  # type: ignore[arg-type]
    async with app.worker(concurrency=1):
        assert await result.get(timeout=10) == "a-b-c"


async def test_links_and_errbacks_are_not_dropped(app: App) -> None:
    seen: list[Any] = []

    @app.task(name="Add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="Fail", max_retries=0)
    async def fail(x: int) -> int:
        raise ValueError(x)

    @app.task(name="Note")
    async def note(value: Any, *extra: Any) -> None:
        seen.append(value)

    results = await app.send_many([add.s(1, 2).link(note.s()), add.s(3, 4),
                                   fail.s(5).set(task_id="bulk-fail").link_error(note.s())])
    async with app.worker(concurrency=4):
        assert await results[0].get(timeout=10) == 3
        assert await results[1].get(timeout=10) == 7
        with pytest.raises(Exception, match="ValueError"):
            await results[2].get(timeout=10)
        assert await eventually(lambda: asyncio.sleep(0, len(seen) == 2))
    assert sorted(map(str, seen)) == ["3", "bulk-fail"]
