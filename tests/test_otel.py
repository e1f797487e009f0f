"""OpenTelemetryHooks: producer and consumer spans in one trace, in-process and across processes."""

from __future__ import annotations

import ast
import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aiocelery import App, TaskDead, TaskFailed
from aiocelery.contrib.otel import OpenTelemetryHooks

from .conftest import make_config
from .helpers import eventually
from .procs import ROOT, Procs


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A private TracerProvider recording finished spans in memory (the global one is untouched)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
async def rds(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind, name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.kind == kind and s.name == name]


def assert_child_of(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.context is not None and parent.context is not None and child.parent is not None
    assert child.context.trace_id == parent.context.trace_id
    assert child.parent.span_id == parent.context.span_id


def add_tasks(app: App) -> None:
    @app.task(name="otel.add")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="otel.boom")
    async def boom() -> None:
        raise ValueError("boom")


async def test_producer_and_consumer_spans_form_one_trace(
        app: App, tracing: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    hooks = OpenTelemetryHooks(provider)
    app.add_hooks(hooks)
    add_tasks(app)
    async with app.worker(concurrency=2):
        result = await app.send_task("otel.add", (2, 3))
        assert await result.get(timeout=10) == 5
    spans = exporter.get_finished_spans()
    [producer] = by_kind(spans, SpanKind.PRODUCER, "otel.add publish")
    [consumer] = by_kind(spans, SpanKind.CONSUMER, "otel.add process")
    assert_child_of(consumer, producer)
    assert producer.parent is None  # sent outside any span: a new trace
    assert dict(producer.attributes or {}) == {
        "messaging.system": "aiocelery", "messaging.operation": "publish",
        "messaging.destination.name": "aiocelery", "messaging.message.id": result.id,
        "aiocelery.task.name": "otel.add",
    }
    attrs = dict(consumer.attributes or {})
    assert {k: attrs[k] for k in ("messaging.system", "messaging.operation", "messaging.destination.name",
                                  "messaging.message.id", "aiocelery.task.name", "aiocelery.task.attempt",
                                  "aiocelery.task.retries", "aiocelery.task.outcome")} == {
        "messaging.system": "aiocelery", "messaging.operation": "process",
        "messaging.destination.name": "aiocelery", "messaging.message.id": result.id,
        "aiocelery.task.name": "otel.add", "aiocelery.task.attempt": 1, "aiocelery.task.retries": 0,
        "aiocelery.task.outcome": "succeeded",
    }
    assert consumer.status.status_code == StatusCode.UNSET
    assert not hooks._open


async def test_a_failing_task_records_an_error(
        app: App, tracing: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    hooks = OpenTelemetryHooks(provider)
    app.add_hooks(hooks)
    add_tasks(app)
    async with app.worker():
        result = await app.send_task("otel.boom")
        with pytest.raises(TaskFailed):
            await result.get(timeout=10)
    spans = exporter.get_finished_spans()
    [producer] = by_kind(spans, SpanKind.PRODUCER, "otel.boom publish")
    [consumer] = by_kind(spans, SpanKind.CONSUMER, "otel.boom process")
    assert_child_of(consumer, producer)
    assert consumer.status.status_code == StatusCode.ERROR
    assert consumer.status.description == "ValueError: boom"
    assert (consumer.attributes or {})["error.type"] == "ValueError"
    assert (consumer.attributes or {})["aiocelery.task.outcome"] == "failed"
    [event] = [e for e in consumer.events if e.name == "exception"]
    event_attrs = dict(event.attributes or {})
    assert event_attrs["exception.type"] == "ValueError"
    assert event_attrs["exception.message"] == "boom"
    assert "raise ValueError" in str(event_attrs["exception.stacktrace"])
    assert not hooks._open


async def test_a_delivery_refused_before_it_runs_still_gets_its_process_span(
        app: App, tracing: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    hooks = OpenTelemetryHooks(provider)
    app.add_hooks(hooks)
    async with app.worker():
        result = await app.send_task("otel.nobody")  # no worker registers it: dead-lettered
        with pytest.raises(TaskDead):
            await result.get(timeout=10)
    spans = exporter.get_finished_spans()
    [producer] = by_kind(spans, SpanKind.PRODUCER, "otel.nobody publish")
    [consumer] = by_kind(spans, SpanKind.CONSUMER, "otel.nobody process")
    assert_child_of(consumer, producer)
    assert (consumer.attributes or {})["aiocelery.task.outcome"] == "dead"
    assert consumer.status.status_code == StatusCode.ERROR
    assert "unknown task 'otel.nobody'" in (consumer.status.description or "")
    assert not hooks._open


async def test_each_attempt_of_a_retried_task_is_a_child_of_the_send(
        app: App, tracing: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    hooks = OpenTelemetryHooks(provider)
    app.add_hooks(hooks)
    calls: list[int] = []

    @app.task(name="otel.flaky", autoretry_for=(ConnectionError,), retry_backoff="fixed",
              retry_backoff_s=0.05, retry_jitter=False)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("first time")
        return "ok"

    async with app.worker():
        assert await (await flaky.delay()).get(timeout=10) == "ok"
    spans = exporter.get_finished_spans()
    [producer] = by_kind(spans, SpanKind.PRODUCER, "otel.flaky publish")
    first, second = sorted(by_kind(spans, SpanKind.CONSUMER, "otel.flaky process"),
                           key=lambda s: (s.attributes or {})["aiocelery.task.attempt"])
    assert_child_of(first, producer)
    assert_child_of(second, producer)
    assert (first.attributes or {})["aiocelery.task.outcome"] == "retried"
    assert first.status.status_code == StatusCode.ERROR
    assert (first.attributes or {})["aiocelery.task.countdown_s"] == pytest.approx(0.05)
    assert (second.attributes or {})["aiocelery.task.retries"] == 1
    assert second.status.status_code == StatusCode.UNSET
    assert not hooks._open


async def test_a_task_sent_from_a_task_continues_the_trace(
        app: App, tracing: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    app.add_hooks(OpenTelemetryHooks(provider))
    add_tasks(app)

    @app.task(name="otel.outer")
    async def outer() -> str:
        inner = await app.send_task("otel.add", (1, 1))
        return inner.id

    @app.task(name="otel.in_thread")
    def in_thread() -> str:  # a def task runs in a thread: the span context goes with it
        return format(trace.get_current_span().get_span_context().span_id, "016x")

    async with app.worker(concurrency=2):
        inner_id = await (await app.send_task("otel.outer")).get(timeout=10)
        assert await app.AsyncResult(inner_id).get(timeout=10) == 2
        thread_span_id = await (await in_thread.delay()).get(timeout=10)
    spans = exporter.get_finished_spans()
    [thread_consumer] = by_kind(spans, SpanKind.CONSUMER, "otel.in_thread process")
    assert thread_consumer.context is not None
    assert thread_span_id == format(thread_consumer.context.span_id, "016x")
    [outer_producer] = by_kind(spans, SpanKind.PRODUCER, "otel.outer publish")
    [outer_consumer] = by_kind(spans, SpanKind.CONSUMER, "otel.outer process")
    [inner_producer] = by_kind(spans, SpanKind.PRODUCER, "otel.add publish")
    [inner_consumer] = by_kind(spans, SpanKind.CONSUMER, "otel.add process")
    assert_child_of(outer_consumer, outer_producer)
    assert_child_of(inner_producer, outer_consumer)
    assert_child_of(inner_consumer, inner_producer)


async def test_head_sampling_traces_a_share_of_sends_and_keeps_traces_whole(
        app: App, tracing: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    app.add_hooks(OpenTelemetryHooks(provider, sample_ratio=0.25))
    add_tasks(app)

    @app.task(name="otel.fan")
    async def fan() -> list[str]:  # sends from inside a task follow that task's sampling decision
        return [(await app.send_task("otel.add", (i, i))).id for i in range(3)]

    async with app.worker(concurrency=8):
        results = await asyncio.gather(*(app.send_task("otel.add", (i, 1)) for i in range(200)))
        assert [await r.get(timeout=10) for r in results] == [i + 1 for i in range(200)]
        with provider.get_tracer("test").start_as_current_span("request"):  # a sampled parent: always traced
            inside = await app.send_task("otel.boom")
        with pytest.raises(TaskFailed):
            await inside.get(timeout=10)
        fans = [await (await fan.delay()).get(timeout=10) for _ in range(40)]
        for ids in fans:
            for task_id in ids:
                await app.AsyncResult(task_id).get(timeout=10)
    spans = exporter.get_finished_spans()
    sent = {s.attributes["messaging.message.id"]: s for s in by_kind(spans, SpanKind.PRODUCER, "otel.add publish")
            if s.attributes}
    ran = {s.attributes["messaging.message.id"]: s for s in by_kind(spans, SpanKind.CONSUMER, "otel.add process")
           if s.attributes}
    top = [r.id for r in results]
    traced = [i for i in top if i in sent]
    assert 20 <= len(traced) <= 80, f"{len(traced)} of 200 traced at 0.25"  # binomial: mean 50, sd 6
    assert set(traced) == {i for i in top if i in ran}  # a traced send is traced in the worker; others nowhere
    for task_id in traced:
        assert_child_of(ran[task_id], sent[task_id])
    [boom_producer] = by_kind(spans, SpanKind.PRODUCER, "otel.boom publish")  # inside a sampled span
    [boom_consumer] = by_kind(spans, SpanKind.CONSUMER, "otel.boom process")
    assert_child_of(boom_consumer, boom_producer)
    fan_runs = {s.attributes["messaging.message.id"] for s in by_kind(spans, SpanKind.CONSUMER, "otel.fan process")
                if s.attributes}
    assert 0 < len(fan_runs) < 40  # some fans traced, some not (all alike: p < 1e-5)
    for ids in fans:  # children of a traced run are traced; of an untraced one, not at all
        fan_id_traced = any(i in sent for i in ids)
        assert all((i in sent) == fan_id_traced and (i in ran) == fan_id_traced for i in ids), ids


def test_sample_ratio_is_checked() -> None:
    with pytest.raises(ValueError, match="sample_ratio must be between 0 and 1"):
        OpenTelemetryHooks(sample_ratio=1.5)


async def test_a_run_the_worker_abandons_at_shutdown_still_ends_its_span(
        app: App, tracing: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    hooks = OpenTelemetryHooks(provider)
    app.add_hooks(hooks)
    started = asyncio.Event()

    @app.task(name="otel.forever")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    async with app.worker(shutdown_grace_s=0.05):
        await forever.delay()
        await asyncio.wait_for(started.wait(), 10)
    [consumer] = by_kind(exporter.get_finished_spans(), SpanKind.CONSUMER, "otel.forever process")
    attributes = consumer.attributes or {}
    assert attributes["aiocelery.task.outcome"] == "released"
    assert attributes["aiocelery.task.released"] == "handed back at shutdown"
    assert consumer.status.status_code != StatusCode.ERROR  # handed back to run again: not an error
    assert not hooks._open


async def test_spans_go_to_the_global_provider_by_default() -> None:
    # Without a provider the API's global one is used; with none configured that is a no-op
    # tracer: sending still works and writes no headers.
    app = App(make_config("memory", "", "otel"))
    app.add_hooks(OpenTelemetryHooks())
    add_tasks(app)
    async with app, app.worker():
        assert await (await app.send_task("otel.add", (1, 2))).get(timeout=10) == 3


def test_aiocelery_works_without_the_extras_and_a_missing_extra_is_named() -> None:
    # (redis-py itself imports opentelemetry when it is installed, so "not in sys.modules" proves
    # nothing here: hide both packages instead and import every module outside contrib.)
    script = (
        "import importlib, pkgutil, sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "sys.modules['prometheus_client'] = None\n"
        "import aiocelery\n"
        "for info in pkgutil.walk_packages(aiocelery.__path__, 'aiocelery.'):\n"
        "    if not info.name.startswith(('aiocelery.contrib.', 'aiocelery.__main__')):\n"
        "        importlib.import_module(info.name)\n"
        "for mod in ('otel', 'prometheus'):\n"
        "    try:\n"
        "        importlib.import_module('aiocelery.contrib.' + mod)\n"
        "    except ImportError as exc:\n"
        "        assert f\"pip install 'aiocelery[{mod}]'\" in str(exc), exc\n"
        "    else:\n"
        "        raise AssertionError(mod + ' imported without its extra')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr


def test_only_contrib_imports_the_extras() -> None:
    offenders = []
    for path in (ROOT / "aiocelery").rglob("*.py"):
        if "contrib" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] in ("opentelemetry", "prometheus_client")]
    assert not offenders


# -- across processes --------------------------------------------------------------------------

REMOTE_TASKS = """\
import json

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from aiocelery.contrib.otel import OpenTelemetryHooks


class JsonLinesExporter(SpanExporter):
    # Finished spans as JSON lines in $SPANS_FILE.

    def export(self, spans):
        with open(os.environ["SPANS_FILE"], "a", encoding="utf-8") as f:
            for s in spans:
                f.write(json.dumps({
                    "name": s.name, "kind": s.kind.name,
                    "trace_id": s.context.trace_id, "span_id": s.context.span_id,
                    "parent_id": s.parent.span_id if s.parent else None,
                    "attributes": dict(s.attributes or {}),
                }) + "\\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter()))
app.add_hooks(OpenTelemetryHooks(provider))


@app.task(name="remote.add")
async def add(a, b):
    return a + b
"""


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


async def test_the_trace_crosses_into_a_worker_process(
        tmp_path: Path, redis_url: str, key_prefix: str, rds: aioredis.Redis,
        tracing: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    spans_file = tmp_path / "spans.jsonl"
    with Procs(tmp_path, redis_url, key_prefix) as procs:
        procs.write_module("otel_remote", REMOTE_TASKS)
        worker = procs.worker("otel_remote:app", "-c", "2", SPANS_FILE=str(spans_file))
        await worker.wait_ready(rds, ["aiocelery"], key_prefix)
        async with App(make_config("redis", redis_url, key_prefix)) as app:
            app.add_hooks(OpenTelemetryHooks(provider))
            result = await app.send_task("remote.add", (20, 22))
            assert await result.get(timeout=15) == 42
        deadline = time.monotonic() + 10  # the span ends just after the outcome is stored
        while not any(s["kind"] == "CONSUMER" for s in read_spans(spans_file)):
            assert time.monotonic() < deadline, f"no consumer span written\n{worker.describe()}"
            await asyncio.sleep(0.02)
        worker.signal(signal.SIGTERM)
        assert await worker.wait(15) == 0, worker.describe()

    [producer] = by_kind(exporter.get_finished_spans(), SpanKind.PRODUCER, "remote.add publish")
    [consumer] = [s for s in read_spans(spans_file) if s["kind"] == "CONSUMER"]
    assert producer.context is not None
    assert consumer["name"] == "remote.add process"
    assert consumer["trace_id"] == producer.context.trace_id
    assert consumer["parent_id"] == producer.context.span_id
    assert consumer["attributes"]["messaging.message.id"] == result.id
    assert consumer["attributes"]["aiocelery.task.outcome"] == "succeeded"


async def test_a_chain_stays_in_one_trace(kind: str, redis_url: str, key_prefix: str,
                                          tracing: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    from aiocelery import chain

    provider, exporter = tracing
    app = App(make_config(kind, redis_url, key_prefix, fetch_block_s=0.2))
    app.add_hooks(OpenTelemetryHooks(tracer_provider=provider))

    @app.task(name="step")
    async def step(x: int) -> int:
        return x + 1

    async with app, app.worker(concurrency=4):
        result = await chain(step.s(0), step.s(), step.s()).apply_async()
        assert await result.get(timeout=10) == 3

        async def three_ended() -> bool:  # a run's span ends just after its outcome is stored
            return len(by_kind(exporter.get_finished_spans(), SpanKind.CONSUMER, "step process")) >= 3

        assert await eventually(three_ended)
    runs = by_kind(exporter.get_finished_spans(), SpanKind.CONSUMER, "step process")
    assert len(runs) == 3
    assert len({s.context.trace_id for s in runs}) == 1, "every step continues the first step's trace"
