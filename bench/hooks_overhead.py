"""What hooks, tracing and metrics cost: no-op tasks with and without them, worker and sender apart.

Starts its own redis-server (persistence off, a free port). Each round builds a fresh app (own
key prefix) with the configuration's hooks, then:

- **send**: ``app.send_many`` of N no-op tasks with no worker running (``on_publish`` per task:
  the publish span, trace context written into the headers); tasks/s.
- **drain**: an embedded worker (concurrency 100) in this process runs them all; tasks/s from
  the worker's start to the last settled delivery (``XLEN`` of the stream is 0), and this
  process's CPU per task (``time.process_time``, all threads: the span exporter's too). Every
  result is checked afterwards, and with tracing, the number of spans exported.

The process is tuned the way ``python -m aiocelery worker`` tunes itself (``gc.freeze()`` after
start-up, collector threshold 10,000), so the worker here costs what a CLI worker costs.

Configurations, rounds interleaved so drift hits all alike; the median of each is reported:

- none: no hooks registered;
- prometheus: ``PrometheusHooks`` (its own registry, not scraped);
- otel: ``OpenTelemetryHooks`` on an SDK TracerProvider (default sampler: every task traced)
  with a BatchSpanProcessor and an exporter that drops the spans (the span work, no network);
- otel-sdk-10%: the same with the SDK sampler ``ParentBased(TraceIdRatioBased(0.1))``;
- otel-head-10%: ``OpenTelemetryHooks(sample_ratio=0.1)``, aiocelery's head sampling (no span
  at all, anywhere, for a send left out);
- all: hooks + tracing + metrics (prometheus and otel together), every task traced;
- all-head-10%, all-head-1%: prometheus and otel with ``sample_ratio`` 0.1 and 0.01.

Last, the hook calls alone (no Redis, no worker), in CPU µs per task.

``--work-us N`` makes each task spin the CPU for N µs first: the same costs against a task that
does some work.

Usage: ``python bench/hooks_overhead.py [--tasks 20000] [--rounds 3] [--concurrency 100] [--work-us 0]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: E402

from aiocelery import App, Config, Hooks  # noqa: E402
from aiocelery._redis.client import command_client  # noqa: E402
from aiocelery.brokers.redis.keys import Keys  # noqa: E402
from aiocelery.cli.worker import GC_THRESHOLD, tune_gc  # noqa: E402
from aiocelery.contrib.otel import OpenTelemetryHooks  # noqa: E402
from aiocelery.contrib.prometheus import PrometheusHooks  # noqa: E402
from aiocelery.tasks.hooks import HookSet  # noqa: E402
from aiocelery.wire.message import TaskMessage  # noqa: E402
from aiocelery.wire.records import Delivery  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

CONFIGS = ("none", "prometheus", "otel", "otel-sdk-10%", "otel-head-10%", "all", "all-head-10%", "all-head-1%")


class DropExporter(SpanExporter):
    """Accepts spans and throws them away."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def make_hooks(config: str) -> tuple[list[Hooks], Callable[[], int]]:
    """The hooks of ``config`` and a function returning how many spans were exported (after shutdown)."""
    hooks: list[Hooks] = []
    exporter = DropExporter()
    provider: TracerProvider | None = None
    if "otel" in config or "all" in config:
        sampler = ParentBased(TraceIdRatioBased(0.1)) if "sdk-" in config else None
        ratio = 1.0 if "head-" not in config else float(config.rsplit("-", 1)[1].rstrip("%")) / 100
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65536))
        hooks.append(OpenTelemetryHooks(provider, sample_ratio=ratio))
    if config == "prometheus" or config.startswith("all"):
        hooks.append(PrometheusHooks())

    def finish() -> int:
        if provider is not None:
            provider.shutdown()
        return exporter.count

    return hooks, finish


async def one_round(url: str, config: str, n: int, concurrency: int, work_us: int = 0) -> tuple[float, float, float]:
    """(send tasks/s, drain tasks/s, drain CPU µs per task) for ``n`` tasks that each spin the CPU
    for ``work_us`` µs (0: no-op)."""
    hooks, finish = make_hooks(config)
    app = App(Config(broker=url, key_prefix=f"bench-hooks-{uuid.uuid4().hex[:8]}"))
    for h in hooks:
        app.add_hooks(h)

    @app.task(name="noop")
    async def noop(x: int) -> int:
        if work_us:
            until = time.perf_counter() + work_us / 1e6
            while time.perf_counter() < until:
                pass
        return x

    async with app:
        client = command_client(app.config.broker, 1)  # the probe's own connection, not the app's
        stream = Keys(app.config.key_prefix).stream(app.config.default_queue)
        await app.send_many([noop.s(-1)])  # warm: connections and scripts
        start = time.perf_counter()
        results = await app.send_many([noop.s(i) for i in range(n)])
        send_s = time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        async with app.worker(concurrency=concurrency, beat=False):
            while await client.call("XLEN", stream):  # noqa: ASYNC110 - the probe polls Redis, like bench/run.py
                await asyncio.sleep(0.002)
            drain_s, cpu = time.perf_counter() - start, time.process_time() - cpu
        values = await asyncio.gather(*(r.get(timeout=30) for r in results))
        await client.aclose()
    if values != list(range(n)):
        raise SystemExit(f"{config}: wrong results")
    spans = finish()
    if config in ("otel", "all") and spans < 2 * n:
        raise SystemExit(f"{config}: only {spans} spans exported for {n} tasks")
    return n / send_s, n / drain_s, cpu / n * 1e6


def hook_calls_us(config: str, n: int = 20_000) -> tuple[float, float]:
    """CPU µs per task of the hook calls alone, no I/O: (sender's on_publish, worker's received +
    started + succeeded)."""
    hooks, finish = make_hooks(config)
    hook_set = HookSet()
    for h in hooks:
        hook_set.add(h)
    messages = [TaskMessage(id=f"id-{i}", name="noop", args=(i,), queue="aiocelery") for i in range(n)]
    cpu = time.process_time()
    for message in messages:
        if hook_set.wants("on_publish"):
            hook_set.call("on_publish", message)
    publish = time.process_time() - cpu
    now_ms = int(time.time() * 1000)
    deliveries = [Delivery(task_id=m.id, name="noop", queue="aiocelery", entry_id=f"{i}-0", attempt=1, payload=b"",
                           redelivered=False, worker="bench", created_ms=now_ms) for i, m in enumerate(messages)]
    cpu = time.process_time()
    for d, message in zip(deliveries, messages, strict=True):
        hook_set.call("on_received", d)
        if hook_set.wants("on_started"):
            hook_set.call("on_started", d, message.headers)
        hook_set.call("on_succeeded", d, 0.0001)
    run = time.process_time() - cpu
    finish()  # the exporter thread's work after this point is not counted
    return publish / n * 1e6, run / n * 1e6


async def measure(url: str, args: argparse.Namespace) -> dict[str, list[tuple[float, float, float]]]:
    rounds: dict[str, list[tuple[float, float, float]]] = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        for config in CONFIGS:
            send, drain, cpu_us = await one_round(url, config, args.tasks, args.concurrency, args.work_us)
            rounds[config].append((send, drain, cpu_us))
            print(f"  round {r + 1} {config:<10} send {send:8,.0f}/s  drain {drain:8,.0f}/s  "
                  f"{cpu_us:5.1f} µs CPU/task", flush=True)
    return rounds


def _cost(value: float, base: float, higher_is_better: bool = True) -> str:
    change = (base - value) / base if higher_is_better else (value - base) / base
    return f"({100 * change:+5.1f} %)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--work-us", type=int, default=0,
                        help="CPU each task spends before returning, in µs (default 0: no-op tasks)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # not the worker's startup warnings about this throwaway Redis
    try:
        import uvloop

        loop_factory, loop_name = uvloop.new_event_loop, "uvloop"
    except ImportError:
        loop_factory, loop_name = None, "asyncio"
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {loop_name}; {args.tasks} tasks of {args.work_us} µs CPU per round, "
          f"embedded worker at concurrency {args.concurrency}, median of {args.rounds} rounds")
    tune_gc(GC_THRESHOLD)
    server = RedisServer().start()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            rounds = runner.run(measure(server.url, args))
    finally:
        server.stop()
    med = {c: [statistics.median(r[i] for r in rounds[c]) for i in range(3)] for c in CONFIGS}
    send0, drain0, cpu0 = med["none"]
    print("\nmedians, cost vs none in brackets (a cost is a lower rate or more CPU):")
    print(f"{'':<11} {'send /s':>18} {'worker drain /s':>22} {'worker CPU µs/task':>24}")
    for c in CONFIGS:
        send, drain, cpu = med[c]
        costs = ("", "", "") if c == "none" else (_cost(send, send0), _cost(drain, drain0), _cost(cpu, cpu0, False))
        print(f"{c:<11} {send:8,.0f} {costs[0]:>9} {drain:11,.0f} {costs[1]:>10} {cpu:12.1f} {costs[2]:>11}")
    print("\nthe hook calls alone (no I/O), CPU µs per task: sender (on_publish) | worker (received + started + "
          "succeeded)")
    for c in CONFIGS[1:]:
        samples = [hook_calls_us(c) for _ in range(3)]
        publish = statistics.median(p for p, _ in samples)
        run = statistics.median(w for _, w in samples)
        print(f"{c:<11} {publish:6.1f} | {run:6.1f}")


if __name__ == "__main__":
    main()
