"""PrometheusHooks: outcomes, timings, in-flight and queue depth, scraped over HTTP."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from aiocelery import App, TaskFailed
from aiocelery.contrib.prometheus import PrometheusHooks, install, serve_metrics
from aiocelery.wire.records import Delivery

from .helpers import eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    """GET the exposition text (in a thread) and index every sample by name and labels."""

    def get() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode("utf-8"))

    text = await asyncio.to_thread(get)
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def add_tasks(app: App) -> tuple[asyncio.Event, asyncio.Event]:
    """ok (succeeds), bad (fails), flaky (fails once, retried, succeeds), gated (sets ``running``,
    then waits for ``gate``); returns (gate, running)."""
    calls: list[int] = []
    gate, running = asyncio.Event(), asyncio.Event()

    @app.task(name="m.ok")
    async def ok() -> str:
        return "ok"

    @app.task(name="m.bad")
    async def bad() -> None:
        raise ValueError("bad")

    @app.task(name="m.flaky", autoretry_for=(ConnectionError,), retry_backoff="fixed", retry_backoff_s=0.05,
              retry_jitter=False)
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("once")
        return "ok"

    @app.task(name="m.gated")
    async def gated() -> str:
        running.set()
        await gate.wait()
        return "opened"

    return gate, running


async def test_outcomes_timings_and_in_flight_are_served(app: App) -> None:
    hooks = PrometheusHooks()
    app.add_hooks(hooks)
    add_tasks(app)
    async with app.worker(concurrency=4):
        oks = [await app.send_task("m.ok") for _ in range(3)]
        bad = await app.send_task("m.bad")
        flaky = await app.send_task("m.flaky")
        for r in oks:
            assert await r.get(timeout=10) == "ok"
        with pytest.raises(TaskFailed):
            await bad.get(timeout=10)
        assert await flaky.get(timeout=10) == "ok"
    with serve_metrics(hooks, 0) as server:
        samples = await scrape(server.url)

    total = "aiocelery_tasks_total"
    assert value(samples, total, task="m.ok", outcome="succeeded") == 3
    assert value(samples, total, task="m.bad", outcome="failed") == 1
    assert value(samples, total, task="m.flaky", outcome="retried") == 1
    assert value(samples, total, task="m.flaky", outcome="succeeded") == 1
    assert sum(v for (name, _), v in samples.items() if name == total) == 6
    for task, runs in (("m.ok", 3), ("m.bad", 1), ("m.flaky", 2)):
        assert value(samples, "aiocelery_task_runtime_seconds_count", task=task) == runs, task
        assert value(samples, "aiocelery_task_queue_wait_seconds_count", task=task) == runs, task
        assert value(samples, "aiocelery_task_runtime_seconds_bucket", task=task, le="+Inf") == runs, task
    # the retry waited its 0.05 s countdown before its second run
    assert value(samples, "aiocelery_task_queue_wait_seconds_sum", task="m.flaky") >= 0.04
    assert value(samples, "aiocelery_task_queue_wait_seconds_sum", task="m.ok") < 5
    assert value(samples, "aiocelery_tasks_in_flight") == 0


async def test_in_flight_and_queue_depth_while_a_worker_is_busy(app: App) -> None:
    hooks = PrometheusHooks()
    app.add_hooks(hooks)
    gate, running = add_tasks(app)
    with serve_metrics(hooks, 0) as server:
        async with app.worker(concurrency=1) as worker:
            results = [await app.send_task("m.gated") for _ in range(4)]
            await asyncio.wait_for(running.wait(), 10)
            assert await hooks.refresh_queue_depth(app) == {"aiocelery": 3}  # one running, three waiting
            samples = await scrape(server.url)
            assert value(samples, "aiocelery_tasks_in_flight") == 1 == worker._slots.used
            assert value(samples, "aiocelery_queue_depth", queue="aiocelery") == 3
            gate.set()
            for r in results:
                assert await r.get(timeout=10) == "opened"
        assert await hooks.refresh_queue_depth(app) == {"aiocelery": 0}
        samples = await scrape(server.url)
    assert value(samples, "aiocelery_tasks_in_flight") == 0
    assert value(samples, "aiocelery_queue_depth", queue="aiocelery") == 0
    assert value(samples, "aiocelery_tasks_total", task="m.gated", outcome="succeeded") == 4


async def test_queue_depth_with_tasks_queued_and_no_worker(app: App) -> None:
    hooks = PrometheusHooks()
    app.add_hooks(hooks)
    add_tasks(app)
    for _ in range(5):
        await app.send_task("m.ok")
    for _ in range(2):
        await app.send_task("m.ok", queue="other")
    await app.send_task("m.ok", countdown=60)  # delayed: not waiting in the queue yet
    assert await hooks.refresh_queue_depth(app, ["aiocelery", "other", "empty"]) == {
        "aiocelery": 5, "other": 2, "empty": 0}
    assert await hooks.refresh_queue_depth(app) == {"aiocelery": 5}  # default: the app's known queues
    with serve_metrics(hooks, 0) as server:
        samples = await scrape(server.url)
    assert value(samples, "aiocelery_queue_depth", queue="aiocelery") == 5
    assert value(samples, "aiocelery_queue_depth", queue="other") == 2
    assert ("aiocelery_queue_depth", frozenset({("queue", "empty")})) in samples
    assert value(samples, "aiocelery_tasks_in_flight") == 0


async def test_deliveries_put_back_by_a_rate_limit_do_not_stay_in_flight(app: App) -> None:
    # A deferred delivery announces no outcome; when it comes back it replaces itself.
    received: list[str] = []

    class Counting(PrometheusHooks):
        def on_received(self, d: Delivery) -> None:
            received.append(d.task_id)
            super().on_received(d)

    hooks = Counting()
    app.add_hooks(hooks)

    @app.task(name="m.limited", rate_limit="20/s", rate_burst=1)
    async def limited() -> int:
        return 1

    async with app.worker(concurrency=4):
        results = await asyncio.gather(*(limited.delay() for _ in range(4)))
        for r in results:
            assert await r.get(timeout=10) == 1
    assert len(received) > 4  # some were put back and came again
    sample = hooks.registry.get_sample_value
    assert sample("aiocelery_tasks_in_flight") == 0
    assert sample("aiocelery_tasks_total", {"task": "m.limited", "outcome": "succeeded"}) == 4
    assert sample("aiocelery_task_runtime_seconds_count", {"task": "m.limited"}) == 4


async def test_install_registers_and_serves_until_closed(app: App) -> None:
    add_tasks(app)
    hooks = install(app, 0, refresh_s=0.05)
    try:
        assert hooks.server is not None
        url = hooks.server.url
        async with app.worker():
            assert await (await app.send_task("m.ok")).get(timeout=10) == "ok"
        samples = await scrape(url)
        assert value(samples, "aiocelery_tasks_total", task="m.ok", outcome="succeeded") == 1

        async def depth_served() -> bool:  # the refresher fills it in on its own
            return ("aiocelery_queue_depth", frozenset({("queue", "aiocelery")})) in await scrape(url)

        assert await eventually(depth_served)
    finally:
        hooks.close()
    with pytest.raises(urllib.error.URLError):
        await scrape(url)
    port = int(url.split(":")[2].split("/")[0])
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a restarted server would
        s.bind(("127.0.0.1", port))  # the port is free again


async def test_each_hooks_instance_has_its_own_registry() -> None:
    first, second = PrometheusHooks(), PrometheusHooks()
    assert first.registry is not second.registry  # no duplicate-timeseries clash, no global state
    shared = CollectorRegistry()
    assert PrometheusHooks(shared).registry is shared
