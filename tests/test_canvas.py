"""Workflows on memory:// and on a real Redis: chain, group, chord, link/link_error, nesting."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from aiocelery import App, CanvasError, Signature, TaskFailed, chain, chord, group
from aiocelery.tasks.canvas import compile_canvas

from .conftest import make_config
from .helpers import eventually, settled
from .procs import GROUP, Procs, stream_key


@pytest.fixture
async def wf_app(kind: str, redis_url: str, key_prefix: str) -> Any:
    app = App(make_config(kind, redis_url, key_prefix, fetch_block_s=0.2))
    runs: Counter[str] = Counter()
    errors: list[tuple[str, str, str]] = []

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        runs["add"] += 1
        return a + b

    @app.task(name="mul")
    def mul(a: int, b: int) -> int:
        runs["mul"] += 1
        return a * b

    @app.task(name="total")
    async def total(xs: list[int], offset: int = 0) -> int:
        runs["total"] += 1
        return sum(xs) + offset

    @app.task(name="boom")
    async def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    @app.task(name="on_error")
    async def on_error(task_id: str, error: dict[str, str], tag: str = "") -> None:
        errors.append((task_id, error["type"], tag))

    app.runs = runs  # type: ignore[attr-defined]
    app.errors = errors  # type: ignore[attr-defined]
    async with app, app.worker(concurrency=8):
        yield app


def task(app: App, name: str) -> Any:
    return app.registry[name]


async def test_chain_feeds_each_result_forward(wf_app: App) -> None:
    add, mul = task(wf_app, "add"), task(wf_app, "mul")
    result = await (add.s(2, 3) | mul.s(10) | add.s(1)).apply_async()
    assert await result.get(timeout=10) == 51
    immutable = await chain(add.s(1, 1), add.si(100, 100)).apply_async()
    assert await immutable.get(timeout=10) == 200


async def test_chain_failure_stops_and_raises_the_failing_step(wf_app: App) -> None:
    add, boom = task(wf_app, "add"), task(wf_app, "boom")
    first = add.s(1, 2).set(task_id="first-step")
    failing = boom.s().set(task_id="failing-step")
    result = await chain(first, failing, add.s(1), add.s(2)).apply_async()
    with pytest.raises(TaskFailed) as info:
        await result.get(timeout=10)
    assert (info.value.task_id, info.value.task_name) == ("failing-step", "boom")
    assert info.value.exc_type == "ValueError" and info.value.exc_message == "boom 3"
    assert await eventually(lambda: settled(wf_app))  # a later step, had the failure started one, ran by now
    assert wf_app.runs["add"] == 1  # type: ignore[attr-defined]  # the later steps never ran


async def test_group_results_in_order_and_counts(wf_app: App) -> None:
    add, boom = task(wf_app, "add"), task(wf_app, "boom")
    g = await group(add.s(i, i) for i in range(10)).apply_async()
    assert await g.get(timeout=10) == [2 * i for i in range(10)]
    assert await g.completed_count() == 10 and await g.ready()
    mixed = await group(add.s(1, 1), boom.s(5), add.s(2, 2)).apply_async()
    with pytest.raises(TaskFailed, match="boom 5"):
        await mixed.get(timeout=10)
    outcomes = await mixed.get(timeout=10, raise_on_failure=False)
    assert outcomes[0] == 2 and outcomes[2] == 4 and isinstance(outcomes[1], TaskFailed)
    assert await mixed.completed_count() == 2


async def test_chord_callback_runs_once_with_every_result(wf_app: App) -> None:
    add, total = task(wf_app, "add"), task(wf_app, "total")
    result = await chord([add.s(i, 1) for i in range(20)], total.s(offset=1000)).apply_async()
    assert await result.get(timeout=10) == sum(range(1, 21)) + 1000
    assert await eventually(lambda: settled(wf_app))  # a second callback, had one been sent, ran by now
    assert wf_app.runs["total"] == 1  # type: ignore[attr-defined]


async def test_chord_failing_member_runs_the_errback_once_and_raises(wf_app: App) -> None:
    add, total, boom, on_error = (task(wf_app, n) for n in ("add", "total", "boom", "on_error"))
    members = [add.s(1, 1), boom.s(7).set(task_id="bad-1"), boom.s(8).set(task_id="bad-2"), add.s(2, 2)]
    result = await chord(members, total.s()).link_error(on_error.s(tag="chord")).apply_async()
    with pytest.raises(TaskFailed) as info:
        await result.get(timeout=10)
    assert info.value.task_id in ("bad-1", "bad-2") and info.value.exc_type == "ValueError"
    # both failing members are stored, and the errback (or a second one) has run
    assert await eventually(lambda: settled(wf_app))
    assert wf_app.errors == [(info.value.task_id, "ValueError", "chord")]  # type: ignore[attr-defined]
    assert wf_app.runs["total"] == 0  # type: ignore[attr-defined]


async def test_link_and_link_error(wf_app: App) -> None:
    add, mul, boom, on_error = (task(wf_app, n) for n in ("add", "mul", "boom", "on_error"))
    callback = mul.s(100).set(task_id="linked-callback")
    parent = await add.s(1, 1).link(callback).apply_async()
    assert await parent.get(timeout=10) == 2
    assert await wf_app.AsyncResult("linked-callback").get(timeout=10) == 200
    failing = await boom.s(1).set(task_id="will-fail").link_error(on_error.s(tag="link")).apply_async()
    with pytest.raises(TaskFailed):
        await failing.get(timeout=10)
    assert await eventually(lambda: settled(wf_app))  # the errback the failure started has run
    assert wf_app.errors == [("will-fail", "ValueError", "link")]  # type: ignore[attr-defined]


async def test_nesting(wf_app: App) -> None:
    add, mul, total = task(wf_app, "add"), task(wf_app, "mul"), task(wf_app, "total")
    chains_in_group = await group(chain(add.s(1, 1), mul.s(3)), chain(add.s(2, 2), mul.s(5))).apply_async()
    assert await chains_in_group.get(timeout=10) == [6, 20]
    group_in_chain = await chain(add.s(1, 1), group(mul.s(2), mul.s(3)), total.s()).apply_async()
    assert await group_in_chain.get(timeout=10) == 10
    chord_of_chains = await chord([chain(add.s(1, 1), mul.s(5)), add.s(10, 10)], total.s()).apply_async()
    assert await chord_of_chains.get(timeout=10) == 30
    ends_in_group = await chain(add.s(1, 1), group(mul.s(2), mul.s(3))).apply_async()
    assert await ends_in_group.get(timeout=10) == [4, 6]  # type: ignore[arg-type]
    chained_chords = await chain(chord([add.s(1, 1), add.s(2, 2)], total.s()), mul.s(10)).apply_async()
    assert await chained_chords.get(timeout=10) == 60


async def test_retried_member_counts_once(kind: str, redis_url: str, key_prefix: str) -> None:
    app = App(make_config(kind, redis_url, key_prefix, fetch_block_s=0.2))
    tries: Counter[int] = Counter()

    @app.task(name="flaky", autoretry_for=(ConnectionError,), retry_backoff="fixed", retry_backoff_s=0.05)
    async def flaky(i: int) -> int:
        tries[i] += 1
        if tries[i] == 1 and i % 2:
            raise ConnectionError("once")
        return i

    @app.task(name="collect")
    async def collect(xs: list[int]) -> list[int]:
        return xs

    async with app, app.worker(concurrency=8):
        result = await chord([flaky.s(i) for i in range(10)], collect.s()).apply_async()
        assert await result.get(timeout=15) == list(range(10))


def test_canvas_errors_and_wire_form() -> None:
    app = App(make_config("memory", "", "x"))
    a = app.task(name="a")(lambda x=0: x)
    with pytest.raises(CanvasError, match="not by another group"):
        compile_canvas(app, chain(group(a.s(), a.s()), group(a.s(), a.s())))
    with pytest.raises(CanvasError, match="at least one header task"):
        compile_canvas(app, chord([], a.s()))
    sig = a.s(1).link(a.si(2)).link_error(a.s(3)).set(queue="q1", countdown=5)
    assert Signature.from_dict(sig.to_dict()) == sig


async def test_group_of_ten_thousand_is_one_publish(redis_url: str, key_prefix: str) -> None:
    app = App(make_config("redis", redis_url, key_prefix))
    app.task(name="noop")(lambda x: x)
    calls: list[int] = []
    broker = app.broker
    original = broker.publish

    async def counting(items: Any) -> Any:
        calls.append(len(items))
        return await original(items)

    broker.publish = counting  # type: ignore[method-assign]
    async with app:
        g = await group(app.registry["noop"].s(i) for i in range(10_000)).apply_async()
        assert len(g) == 10_000
    assert calls == [10_000], "a group is published in one pipelined round trip"


@pytest.fixture
def procs(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[Procs]:
    with Procs(tmp_path, redis_url, key_prefix) as p:
        yield p


CHORD_TASKS = """
import redis.asyncio as aioredis

ledger = aioredis.Redis.from_url(os.environ["AIOCELERY_BROKER"])


@app.task(name="part")
async def part(i: int) -> int:
    await asyncio.sleep(0.01)
    return i


@app.task(name="sum_all")
async def sum_all(xs: list[int]) -> int:
    await ledger.rpush(os.environ["AIOCELERY_KEY_PREFIX"] + ":callbacks", len(xs))
    return sum(xs)
"""


@pytest.mark.timeout(120)
async def test_chord_of_1000_survives_a_worker_sigkill(procs: Procs, redis_url: str, key_prefix: str) -> None:
    procs.write_module("chord_tasks", CHORD_TASKS)
    env = {"AIOCELERY_LEASE_S": "1.5", "AIOCELERY_RECLAIM_INTERVAL_S": "0.3", "AIOCELERY_FETCH_BLOCK_S": "0.3"}
    doomed = procs.worker("chord_tasks:app", "-c", "20", "-l", "warning", **env)
    survivor = procs.worker("chord_tasks:app", "-c", "20", "-l", "warning", **env)
    app = App(make_config("redis", redis_url, key_prefix))
    rds = aioredis.Redis.from_url(redis_url)
    try:
        await doomed.wait_banner()
        await survivor.wait_banner()
        stream = stream_key(key_prefix, app.config.default_queue)

        async def some_done_some_on_the_doomed_worker() -> bool:
            held = (await rds.xpending(stream, GROUP))["consumers"]
            on_doomed = sum(c["pending"] for c in held if f":{doomed.pid}:" in c["name"].decode())
            info = await rds.xinfo_stream(stream)
            return on_doomed > 0 and info["entries-added"] > info["length"]  # a stored task leaves the stream

        result = await chord([Signature("part", args=[i]) for i in range(1000)],
                             Signature("sum_all")).apply_async(app)
        assert await eventually(some_done_some_on_the_doomed_worker)
        doomed.signal(signal.SIGKILL)
        assert await result.get(timeout=90) == sum(range(1000))
        # every delivery, the doomed worker's reclaimed ones and any second callback included, is stored
        assert await eventually(lambda: settled(app), timeout=15)
        callbacks = await rds.lrange(f"{key_prefix}:callbacks", 0, -1)
    finally:
        await rds.aclose()
        await app.close()
    assert callbacks == [b"1000"], "the callback runs exactly once, with all 1000 results"
