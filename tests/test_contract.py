"""One contract suite for the Broker, Consumer and ResultBackend protocols.

Every test drives ``app.broker``, ``app.backend`` and ``app.broker.consumer(...)`` directly and
runs twice: on memory:// and on the real redis-server the session starts. The two
implementations are peers; whatever one does, the other must do too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from aiocelery import App, AsyncResult, ResultError, ResultLost, ResultNotFound, ResultTimeout, TaskDead, TaskRevoked
from aiocelery.brokers.base import Consumer, Outgoing
from aiocelery.brokers.redis.keys import Keys
from aiocelery.wire.message import TaskMessage, decode_payload, decode_value, encode_value
from aiocelery.wire.records import Delivery, ErrorInfo, Settlement

from .helpers import (
    Apps,
    created,
    dead_letters,
    eventually,
    inject_delivery,
    listeners,
    memory_store,
    raw_redis,
    subscriber_count,
)

QUEUE = "contract"
NAME = "contract.task"

ConsumerFactory = Callable[..., Awaitable[Consumer]]


def new_id() -> str:
    return f"id-{uuid.uuid4().hex}"


def outgoing(task_id: str | None = None, *, args: Sequence[Any] = (1, 2), kwargs: dict[str, Any] | None = None,
             queue: str = QUEUE, delay_ms: int = 0, eta_ms: int | None = None) -> Outgoing:
    msg = TaskMessage(id=task_id or new_id(), name=NAME, args=tuple(args), kwargs=kwargs or {}, queue=queue,
                      delay_ms=delay_ms, eta_ms=eta_ms)
    return Outgoing(msg, msg.encode(1 << 20))


def success(value: Any) -> Settlement:
    return Settlement("SUCCESS", result=encode_value(value, "test value"))


@pytest.fixture
async def apps(kind: str, redis_url: str, key_prefix: str) -> AsyncIterator[Apps]:
    async with Apps(kind, redis_url, key_prefix) as factory:
        yield factory


def new_consumer(app: App, name: str, queues: Sequence[str] = (QUEUE,)) -> Consumer:
    """``broker.consumer`` for a worker named after the consumer (one place to follow the protocol)."""
    return app.broker.consumer(list(queues), name, f"worker-{name}")


@pytest.fixture
async def consumer(app: App) -> AsyncIterator[ConsumerFactory]:
    """Makes consumers of ``app`` (queues ensured first) and closes them after the test."""
    made: list[Consumer] = []

    async def make(name: str, queues: Sequence[str] = (QUEUE,), *, target: App | None = None,
                   ensure: bool = True) -> Consumer:
        if ensure:
            await (target or app).broker.ensure_queues(list(queues))
        c = new_consumer(target or app, name, queues)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


async def crash(app: App, consumer: Consumer, task_id: str) -> None:
    """What a worker's death leaves: on RabbitMQ its channel closes and the message is redelivered;
    elsewhere its delivery is handed out again (as a reclaim of an expired lease does)."""
    if app.config.is_amqp:
        await consumer.close()
    else:
        await inject_delivery(app, QUEUE, task_id)


async def fetch_up_to(c: Consumer, count: int, timeout: float = 2.0) -> list[Delivery]:
    """Fetch until ``count`` deliveries came or ``timeout`` passed. Redis hands over up to ``count``
    of what waits in one call; RabbitMQ pushes (up to the consumer's prefetch, its first count), and
    a fetch returns what has arrived when the first message does."""
    deadline = time.monotonic() + timeout
    got: list[Delivery] = []
    while len(got) < count and time.monotonic() < deadline:
        got += await c.fetch(count - len(got), max(0.01, min(0.2, deadline - time.monotonic())))
    return got


async def fetch_one(c: Consumer) -> Delivery:
    deliveries = await c.fetch(10, 2.0)
    assert len(deliveries) == 1, deliveries
    return deliveries[0]


@contextlib.asynccontextmanager
async def promoting(app: App, queues: Sequence[str] = (QUEUE,)) -> AsyncIterator[None]:
    """Run ``broker.promote_forever`` in the background, as a worker's side loop does."""
    task = asyncio.create_task(app.broker.promote_forever(list(queues)))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- publish and fetch -------------------------------------------------------------------------


async def test_publish_is_idempotent_per_task_id(app: App, consumer: ConsumerFactory) -> None:
    item = outgoing()
    task_id = item.message.id
    assert created(await app.broker.publish([item])) == [True]
    assert created(await app.broker.publish([item])) == [False]
    # A re-send with other arguments under the same id changes nothing either.
    assert created(await app.broker.publish([outgoing(task_id, args=(9, 9))])) == [False]

    c = await consumer("c1")
    d = await fetch_one(c)
    assert d.task_id == task_id
    assert decode_payload(d.payload).args == [1, 2]
    assert await c.fetch(10, 0.1) == []


async def test_publish_batch_reports_each_item(app: App, consumer: ConsumerFactory) -> None:
    a, b = outgoing(), outgoing()
    assert created(await app.broker.publish([a, a, b])) == [True, False, True]
    c = await consumer("c1")
    deliveries = await c.fetch(10, 2.0)
    assert [d.task_id for d in deliveries] == [a.message.id, b.message.id]
    assert await c.fetch(10, 0.1) == []


async def test_publish_of_a_finished_task_id_is_refused(app: App, consumer: ConsumerFactory) -> None:
    item = outgoing()
    await app.broker.publish([item])
    c = await consumer("c1")
    d = await fetch_one(c)
    assert await app.broker.settle(d, success("done"))
    assert created(await app.broker.publish([item])) == [False]
    assert await c.fetch(10, 0.1) == []
    record = await app.backend.get_record(item.message.id)
    assert record is not None and record.state == "SUCCESS"


async def test_pending_record_and_unknown_id(app: App) -> None:
    item = outgoing(kwargs={"x": "y"})
    await app.broker.publish([item])
    record = await app.backend.get_record(item.message.id)
    assert record is not None
    assert (record.id, record.name, record.queue, record.state, record.attempt) == (
        item.message.id, NAME, QUEUE, "PENDING", 0)
    assert not record.ready
    assert record.created_ms > 0
    assert await app.backend.get_record(new_id()) is None


async def test_fetch_returns_a_started_delivery(app: App, consumer: ConsumerFactory) -> None:
    item = outgoing(args=("国学", [1, {"k": None}]), kwargs={"flag": True})
    await app.broker.publish([item])
    c = await consumer("c1")
    d = await fetch_one(c)
    assert (d.task_id, d.name, d.queue, d.attempt, d.redelivered) == (item.message.id, NAME, QUEUE, 1, False)
    assert d.payload == item.payload
    payload = decode_payload(d.payload)
    assert payload.args == ["国学", [1, {"k": None}]]
    assert payload.kwargs == {"flag": True}
    assert d.entry_id

    record = await app.backend.get_record(d.task_id)
    assert record is not None
    assert (record.state, record.attempt) == ("STARTED", 1)
    assert record.started_ms >= record.created_ms > 0


async def test_two_consumers_never_share_a_delivery(app: App, consumer: ConsumerFactory) -> None:
    items = [outgoing() for _ in range(10)]
    assert created(await app.broker.publish(items)) == [True] * 10
    c1, c2 = await consumer("c1"), await consumer("c2")
    first = await fetch_up_to(c1, 4)
    second = await fetch_up_to(c2, 10)
    assert len(first) == 4
    ids1, ids2 = {d.task_id for d in first}, {d.task_id for d in second}
    assert not ids1 & ids2
    assert ids1 | ids2 == {i.message.id for i in items}


async def test_fetch_without_ensure_queues_still_gets_earlier_tasks(app: App, consumer: ConsumerFactory) -> None:
    # On Redis the consumer group is created on NOGROUP, at id 0 (never "$"), so a task published
    # before any worker existed is still delivered.
    item = outgoing()
    await app.broker.publish([item])
    c = await consumer("c1", ensure=False)
    got: list[Delivery] = []
    for _ in range(3):
        got += await c.fetch(10, 0.5)
        if got:
            break
    assert [d.task_id for d in got] == [item.message.id]


# -- settle -------------------------------------------------------------------------------------


async def test_settle_success_stores_the_result(app: App, consumer: ConsumerFactory) -> None:
    await app.broker.publish([outgoing()])
    c = await consumer("c1")
    d = await fetch_one(c)
    assert await app.broker.settle(d, success({"sum": [3, "三"]})) is True
    record = await app.backend.get_record(d.task_id)
    assert record is not None
    assert record.state == "SUCCESS" and record.ready
    assert record.result is not None and decode_value(record.result) == {"sum": [3, "三"]}
    assert record.error is None
    assert record.attempt == 1
    assert record.done_ms >= record.started_ms
    assert await dead_letters(app, QUEUE) == []
    # Settled means acknowledged: nothing to hand back, nothing to fetch.
    assert await c.release() == 0
    assert await c.fetch(10, 0.1) == []


async def test_settle_failure_stores_the_error(app: App, consumer: ConsumerFactory) -> None:
    await app.broker.publish([outgoing()])
    c = await consumer("c1")
    d = await fetch_one(c)
    error = ErrorInfo("ValueError", "bad input 国", 'Traceback (most recent call last):\n  File "x.py"\n')
    assert await app.broker.settle(d, Settlement("FAILURE", error=error)) is True
    record = await app.backend.get_record(d.task_id)
    assert record is not None
    assert record.state == "FAILURE" and record.ready
    assert record.error == error
    assert record.result is None
    assert await dead_letters(app, QUEUE) == []
    assert await c.release() == 0


async def test_settle_dead_stores_reason_and_dead_letter(app: App, consumer: ConsumerFactory) -> None:
    await app.broker.publish([outgoing()])
    c = await consumer("c1")
    d = await fetch_one(c)
    error = ErrorInfo("NotRegistered", "unknown task", "")
    assert await app.broker.settle(d, Settlement("DEAD", error=error, reason="unknown task 'x'")) is True
    record = await app.backend.get_record(d.task_id)
    assert record is not None
    assert (record.state, record.reason, record.error) == ("DEAD", "unknown task 'x'", error)
    letters = await dead_letters(app, QUEUE)
    assert [(e["id"], e["name"], e["reason"]) for e in letters] == [(d.task_id, NAME, "unknown task 'x'")]
    assert await c.release() == 0


async def test_settle_with_a_stale_attempt_changes_nothing(app: App, consumer: ConsumerFactory) -> None:
    await app.broker.publish([outgoing()])
    c1, c2 = await consumer("c1"), await consumer("c2")
    d1 = await fetch_one(c1)
    assert await c1.release() == 1
    d2 = await fetch_one(c2)
    assert (d2.task_id, d2.attempt, d2.redelivered) == (d1.task_id, 2, True)

    assert await app.broker.settle(d1, success("stale")) is False
    record = await app.backend.get_record(d1.task_id)
    assert record is not None and (record.state, record.attempt, record.result) == ("STARTED", 2, None)

    # A made-up future attempt is fenced out as well.
    future = d2._replace(attempt=7)
    assert await app.broker.settle(future, success("future")) is False

    assert await app.broker.settle(d2, success("fresh")) is True
    assert await app.broker.settle(d1, Settlement("FAILURE", error=ErrorInfo("E", "late", ""))) is False
    record = await app.backend.get_record(d1.task_id)
    assert record is not None and record.state == "SUCCESS"
    assert record.result is not None and decode_value(record.result) == "fresh"
    assert record.error is None


async def test_settling_twice_is_harmless_and_first_writer_wins(app: App, consumer: ConsumerFactory) -> None:
    await app.broker.publish([outgoing()])
    c = await consumer("c1")
    d = await fetch_one(c)
    assert await app.broker.settle(d, success("first")) is True
    # The same outcome again (a retried script call) is accepted and changes nothing ...
    assert await app.broker.settle(d, success("second")) is True
    # ... another outcome for the same attempt is refused.
    assert await app.broker.settle(d, Settlement("FAILURE", error=ErrorInfo("E", "m", ""))) is False
    record = await app.backend.get_record(d.task_id)
    assert record is not None and record.state == "SUCCESS"
    assert record.result is not None and decode_value(record.result) == "first"
    assert record.error is None
    assert await c.fetch(10, 0.1) == []
    assert await c.release() == 0


async def test_settle_of_a_released_attempt_is_refused(app: App, consumer: ConsumerFactory) -> None:
    await app.broker.publish([outgoing()])
    c = await consumer("c1")
    d = await fetch_one(c)
    assert await c.release() == 1
    assert await app.broker.settle(d, success("too late")) is False
    record = await app.backend.get_record(d.task_id)
    assert record is not None and (record.state, record.result) == ("PENDING", None)


def test_a_settlement_must_be_terminal_retry_or_defer() -> None:
    for state in ("PENDING", "STARTED", "nonsense"):
        with pytest.raises(ValueError, match="terminal"):
            Settlement(state)
    for state in ("SUCCESS", "FAILURE", "DEAD", "REVOKED"):
        assert Settlement(state).state == state


# -- release and crashes ------------------------------------------------------------------------


async def test_release_hands_unsettled_deliveries_back(app: App, consumer: ConsumerFactory) -> None:
    a, b = outgoing(), outgoing()
    await app.broker.publish([a, b])
    c1, c2 = await consumer("c1"), await consumer("c2")
    first = await c1.fetch(10, 2.0)
    assert {d.task_id for d in first} == {a.message.id, b.message.id}
    done = next(d for d in first if d.task_id == a.message.id)
    assert await app.broker.settle(done, success(1))

    assert await c1.release() == 1
    record = await app.backend.get_record(b.message.id)
    assert record is not None and record.state == "PENDING"
    assert await c1.release() == 0  # nothing left to hand back

    again = await fetch_one(c2)
    assert (again.task_id, again.attempt, again.redelivered) == (b.message.id, 2, True)
    assert decode_payload(again.payload).args == [1, 2]
    record = await app.backend.get_record(b.message.id)
    assert record is not None and (record.state, record.attempt) == ("STARTED", 2)
    done_record = await app.backend.get_record(a.message.id)
    assert done_record is not None and done_record.state == "SUCCESS"


async def test_release_is_not_a_crash(apps: Apps) -> None:
    app = apps(max_crashes=1)
    item = outgoing()
    await app.broker.publish([item])
    for n in range(1, 5):
        c = new_consumer(app, f"c{n}")
        await app.broker.ensure_queues([QUEUE])
        try:
            d = await fetch_one(c)
            assert d.attempt == n
            assert await c.release() == 1
        finally:
            await c.close()
    record = await app.backend.get_record(item.message.id)
    assert record is not None and (record.state, record.attempt) == ("PENDING", 4)
    assert await dead_letters(app, QUEUE) == []


async def test_restarting_a_started_task_counts_crashes_until_dead(apps: Apps) -> None:
    # A delivery of a task that is still STARTED means its last attempt died without settling
    # (on Redis a reclaim hands such an entry to another consumer; on RabbitMQ the redelivery waits
    # for the dead attempt's lease to end: short here, and nobody renews it). Past max_crashes it is poison.
    app = apps(max_crashes=1, lease_s=0.3)
    item = outgoing()
    task_id = item.message.id
    await app.broker.publish([item])
    await app.broker.ensure_queues([QUEUE])
    consumers = [new_consumer(app, f"c{n}") for n in range(3)]
    try:
        d1 = await fetch_one(consumers[0])
        await crash(app, consumers[0], task_id)
        d2 = await fetch_one(consumers[1])  # first crash: 1 <= max_crashes, runs again
        assert (d2.attempt, d2.redelivered) == (2, True)
        assert await app.broker.settle(d1, success("zombie")) is False  # the crashed attempt is fenced

        await crash(app, consumers[1], task_id)
        assert await consumers[2].fetch(10, 1.0) == []  # second crash: dead-lettered, not run
    finally:
        for c in consumers:
            await c.close()

    record = await app.backend.get_record(task_id)
    assert record is not None
    assert record.state == "DEAD"
    assert "crashed" in record.reason and "max_crashes 1" in record.reason
    letters = await dead_letters(app, QUEUE)
    assert [(e["id"], e["name"]) for e in letters] == [(task_id, NAME)]
    assert "crashed" in letters[0]["reason"]
    assert await app.broker.settle(d2, success("late")) is False

    waited = await app.backend.wait(task_id, 5)
    assert waited.state == "DEAD"
    with pytest.raises(TaskDead, match="crashed"):
        await AsyncResult(task_id, app.backend).get(timeout=5)


async def test_delivery_without_a_record_is_dead_lettered(app: App, consumer: ConsumerFactory) -> None:
    ghost = new_id()
    c = await consumer("c1")
    await inject_delivery(app, QUEUE, ghost)
    assert await c.fetch(10, 1.0) == []
    letters = await dead_letters(app, QUEUE)
    assert [(e["id"], e["reason"]) for e in letters] == [(ghost, "task record missing")]
    assert await c.release() == 0
    assert await app.backend.get_record(ghost) is None


async def test_delivery_of_a_finished_task_is_skipped(app: App, consumer: ConsumerFactory) -> None:
    item = outgoing()
    await app.broker.publish([item])
    c = await consumer("c1")
    d = await fetch_one(c)
    assert await app.broker.settle(d, success("once"))
    await inject_delivery(app, QUEUE, item.message.id)  # a duplicate entry must not run it again
    assert await c.fetch(10, 1.0) == []
    record = await app.backend.get_record(item.message.id)
    assert record is not None and (record.state, record.attempt) == ("SUCCESS", 1)
    assert await c.release() == 0


# -- delayed tasks ------------------------------------------------------------------------------


async def test_delayed_tasks_wait_for_their_due_time(app: App, consumer: ConsumerFactory) -> None:
    far = outgoing(delay_ms=60_000)
    soon = outgoing(delay_ms=200)
    soon_eta = outgoing(eta_ms=int(time.time() * 1000) + 200)
    assert created(await app.broker.publish([far, soon, soon_eta])) == [True, True, True]
    c = await consumer("c1")
    assert await c.fetch(10, 0.05) == []  # nothing is due yet and nobody promotes

    got: list[Delivery] = []
    async with promoting(app):
        for _ in range(20):
            got += await c.fetch(10, 0.5)
            if len(got) >= 2:
                break
        assert await c.fetch(10, 0.3) == []  # the far one stays delayed while the promoter runs
    assert sorted(d.task_id for d in got) == sorted([soon.message.id, soon_eta.message.id])
    for d in got:
        record = await app.backend.get_record(d.task_id)
        assert record is not None and record.started_ms >= record.created_ms
    record = await app.backend.get_record(far.message.id)
    assert record is not None and (record.state, record.attempt) == ("PENDING", 0)


async def test_eta_in_the_past_is_ready_at_once(app: App, consumer: ConsumerFactory) -> None:
    item = outgoing(eta_ms=int(time.time() * 1000) - 5_000)
    await app.broker.publish([item])
    c = await consumer("c1")
    assert (await fetch_one(c)).task_id == item.message.id


async def test_each_delayed_task_is_promoted_once_by_racing_promoters(app: App, consumer: ConsumerFactory) -> None:
    items = [outgoing(delay_ms=150) for _ in range(20)]
    await app.broker.publish(items)
    c = await consumer("c1")
    got: list[Delivery] = []
    async with promoting(app), promoting(app), promoting(app):
        for _ in range(20):
            got += await c.fetch(50, 0.5)
            if len(got) >= len(items):
                break
        assert await c.fetch(50, 0.3) == []
    assert sorted(d.task_id for d in got) == sorted(i.message.id for i in items)


# -- results: get_record and wait ---------------------------------------------------------------


async def test_wait_returns_at_once_for_a_final_record(app: App, consumer: ConsumerFactory) -> None:
    await app.broker.publish([outgoing()])
    c = await consumer("c1")
    d = await fetch_one(c)
    await app.broker.settle(d, success(42))
    record = await app.backend.wait(d.task_id, 30)
    assert record.state == "SUCCESS"
    assert record.result is not None and decode_value(record.result) == 42
    assert await AsyncResult(d.task_id, app.backend).get(timeout=30) == 42


async def test_wait_on_an_unknown_id_raises_not_found_at_once(app: App) -> None:
    task_id = new_id()
    with pytest.raises(ResultNotFound) as info:
        await app.backend.wait(task_id, 30)  # pytest's 60 s timeout would catch a hang
    assert info.value.task_id == task_id
    assert task_id in str(info.value)
    assert isinstance(info.value, ResultError)
    with pytest.raises(ResultNotFound):
        await app.backend.wait(task_id, None)


@pytest.mark.parametrize("started", [False, True], ids=["pending", "started"])
async def test_wait_on_an_unfinished_task_times_out(app: App, consumer: ConsumerFactory, started: bool) -> None:
    item = outgoing()
    await app.broker.publish([item])
    if started:
        await fetch_one(await consumer("c1"))
    with pytest.raises(ResultTimeout) as info:
        await app.backend.wait(item.message.id, 0.2)
    err = info.value
    assert isinstance(err, TimeoutError)
    assert err.task_id == item.message.id
    assert item.message.id in str(err)
    assert err.timeout == 0.2
    assert err.state == ("STARTED" if started else "PENDING")
    assert err.state in str(err)


async def test_wait_wakes_every_waiter_when_settled(app: App, consumer: ConsumerFactory) -> None:
    await app.broker.publish([outgoing()])
    c = await consumer("c1")
    d = await fetch_one(c)
    waiters = [asyncio.create_task(app.backend.wait(d.task_id, 30)) for _ in range(3)]

    async def all_listening() -> bool:  # each read the STARTED record, then subscribed
        return listeners(app, d.task_id) == 3 and await subscriber_count(app, d.task_id) >= 1

    assert await eventually(all_listening)
    assert not any(w.done() for w in waiters)  # a waiter that returned early would also return STARTED
    await app.broker.settle(d, success("woken"))
    records = await asyncio.gather(*waiters)
    assert [r.state for r in records] == ["SUCCESS"] * 3
    assert all(r.result is not None and decode_value(r.result) == "woken" for r in records)


async def test_wait_leaves_no_subscription_behind(app: App) -> None:
    item = outgoing()
    await app.broker.publish([item])
    task_id = item.message.id

    with pytest.raises(ResultTimeout):
        await app.backend.wait(task_id, 0.1)

    waiter = asyncio.create_task(app.backend.wait(task_id, 30))

    async def subscribed() -> bool:
        return await subscriber_count(app, task_id) == 1

    assert await eventually(subscribed)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    async def unsubscribed() -> bool:
        return await subscriber_count(app, task_id) == 0

    assert await eventually(unsubscribed)


async def test_results_expire_after_their_ttl(apps: Apps) -> None:
    app = apps(result_ttl_s=0.2)
    item = outgoing()
    await app.broker.publish([item])
    await app.broker.ensure_queues([QUEUE])
    c = new_consumer(app, "c1")
    try:
        d = await fetch_one(c)
        await app.broker.settle(d, success("short-lived"))

        async def gone() -> bool:
            return await app.backend.get_record(item.message.id) is None

        assert await eventually(gone)
        with pytest.raises(ResultNotFound):
            await app.backend.wait(item.message.id, 5)
        # Once the record expired, the id may be used again.
        assert created(await app.broker.publish([item])) == [True]
    finally:
        await c.close()


async def test_wait_with_zero_timeout_returns_a_final_record(app: App, consumer: ConsumerFactory) -> None:
    await app.broker.publish([outgoing()])
    c = await consumer("c1")
    d = await fetch_one(c)
    await app.broker.settle(d, success("ready"))
    record = await app.backend.wait(d.task_id, 0)
    assert record.state == "SUCCESS"


async def test_wait_with_zero_timeout_on_an_unknown_id_raises_not_found(app: App) -> None:
    with pytest.raises(ResultNotFound):
        await app.backend.wait(new_id(), 0)


async def test_revoked_record_raises_task_revoked(app: App, consumer: ConsumerFactory) -> None:
    await app.broker.publish([outgoing()])
    c = await consumer("c1")
    d = await fetch_one(c)
    assert await app.broker.settle(d, Settlement("REVOKED", reason="revoked by operator"))
    with pytest.raises(TaskRevoked) as info:
        await AsyncResult(d.task_id, app.backend).get(timeout=5)
    assert info.value.reason == "revoked by operator"
    assert (info.value.task_id, info.value.task_name) == (d.task_id, NAME)


async def test_wait_raises_result_lost_when_the_record_vanishes(app: App) -> None:
    # Redis restarted empty or evicted the key while somebody waited: a clear error, not a hang.
    item = outgoing()
    task_id = item.message.id
    await app.broker.publish([item])
    waiter = asyncio.create_task(app.backend.wait(task_id, 30))

    async def subscribed() -> bool:
        return await subscriber_count(app, task_id) == 1

    assert await eventually(subscribed)
    if app.config.is_memory:
        store = memory_store(app)
        del store.records[task_id]
        store.notify(task_id, "gone")
    else:
        keys = Keys(app.config.key_prefix)
        async with raw_redis(app.config.backend_url) as client:
            await client.delete(keys.task(task_id))
            await client.publish(keys.done(task_id), "gone")
    with pytest.raises(ResultLost) as info:
        await waiter
    assert info.value.task_id == task_id and task_id in str(info.value)

