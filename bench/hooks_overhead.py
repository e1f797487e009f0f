"""What tracing and metrics hooks cost: 5,000 no-op tasks through an embedded worker, with and without.

Starts its own redis-server (persistence off, a free port). Each round builds a fresh app (own
key prefix), runs an embedded worker (concurrency 100) in this process, sends N no-op tasks
(concurrent ``delay()`` calls, 1,000 at a time) and awaits every result; the rate is tasks/s end
to end. Sender and worker share the process, so the figure includes the hooks on both sides
(``on_publish`` per send; received/started/outcome per run).

Also the CPU time this process spent per task (``time.process_time``, all its threads), which
load from other processes on the machine disturbs far less than the wall-clock rate.

Configurations, rounds interleaved so drift hits all alike; the best rate and the median CPU
per task of each are reported:

- none: no hooks registered;
- otel: ``OpenTelemetryHooks`` on an SDK TracerProvider with a BatchSpanProcessor and an
  exporter that drops the spans (the span work without network I/O);
- prometheus: ``PrometheusHooks`` (its own registry, not scraped);
- both: the two together.

Last, the hook calls alone (no Redis, no worker), in CPU µs per task.

Usage: ``python bench/hooks_overhead.py [--tasks 5000] [--rounds 5] [--concurrency 100]``
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

from aiocelery import App, Config, Hooks  # noqa: E402
from aiocelery.contrib.otel import OpenTelemetryHooks  # noqa: E402
from aiocelery.contrib.prometheus import PrometheusHooks  # noqa: E402
from aiocelery.hooks import HookSet  # noqa: E402
from aiocelery.message import TaskMessage  # noqa: E402
from aiocelery.records import Delivery  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

CONFIGS = ("none", "otel", "prometheus", "both")


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
    if config in ("otel", "both"):
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65536))
        hooks.append(OpenTelemetryHooks(provider))
    if config in ("prometheus", "both"):
        hooks.append(PrometheusHooks())

    def finish() -> int:
        if provider is not None:
            provider.shutdown()
        return exporter.count

    return hooks, finish


async def one_round(url: str, config: str, n: int, concurrency: int, chunk: int = 1000) -> tuple[float, float]:
    """(tasks/s, CPU µs per task in this process) for ``n`` no-op tasks sent and awaited through
    an embedded worker."""
    hooks, finish = make_hooks(config)
    app = App(Config(broker=url, key_prefix=f"bench-hooks-{uuid.uuid4().hex[:8]}"))
    for h in hooks:
        app.add_hooks(h)

    @app.task(name="noop")
    async def noop(x: int) -> int:
        return x

    async with app, app.worker(concurrency=concurrency, beat=False):
        await (await noop.delay(-1)).get(timeout=30)  # warm: connections, scripts, consumer group
        start, cpu = time.perf_counter(), time.process_time()
        results = []
        for i in range(0, n, chunk):
            results += await asyncio.gather(*(noop.delay(x) for x in range(i, min(n, i + chunk))))
        values = await asyncio.gather(*(r.get(timeout=120) for r in results))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if values != list(range(n)):
        raise SystemExit(f"{config}: wrong results")
    spans = finish()
    if config in ("otel", "both") and spans < 2 * (n + 1):
        raise SystemExit(f"{config}: only {spans} spans exported for {n + 1} tasks")
    return n / elapsed, cpu / n * 1e6


def hook_calls_us(config: str, n: int = 20_000) -> float:
    """CPU µs per task of the hook calls alone (publish, received, started, succeeded), no I/O."""
    hooks, finish = make_hooks(config)
    hook_set = HookSet()
    for h in hooks:
        hook_set.add(h)
    cpu = time.process_time()
    for i in range(n):
        message = TaskMessage(id=f"id-{i}", name="noop", args=(i,), queue="aiocelery")
        if hook_set.wants("on_publish"):
            hook_set.call("on_publish", message)
        d = Delivery(task_id=message.id, name="noop", queue="aiocelery", entry_id=f"{i}-0", attempt=1, payload=b"",
                     redelivered=False, worker="bench", created_ms=int(time.time() * 1000))
        if hook_set:
            hook_set.call("on_received", d)
        if hook_set.wants("on_started"):
            hook_set.call("on_started", d, message.headers)
        if hook_set:
            hook_set.call("on_succeeded", d, 0.0001)
    cpu = time.process_time() - cpu
    finish()  # the exporter thread's work after this point is not counted
    return cpu / n * 1e6


async def measure(url: str, args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    rounds: dict[str, list[tuple[float, float]]] = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        for config in CONFIGS:
            rate, cpu_us = await one_round(url, config, args.tasks, args.concurrency)
            rounds[config].append((rate, cpu_us))
            print(f"  round {r + 1} {config:<10} {rate:8,.0f} tasks/s  {cpu_us:6.0f} µs CPU/task", flush=True)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # not the worker's startup warnings about this throwaway Redis
    try:
        import uvloop

        loop_factory, loop_name = uvloop.new_event_loop, "uvloop"
    except ImportError:
        loop_factory, loop_name = None, "asyncio"
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {loop_name}; {args.tasks} no-op tasks per round, "
          f"embedded worker at concurrency {args.concurrency}, best of {args.rounds} rounds")
    server = RedisServer().start()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            rounds = runner.run(measure(server.url, args))
    finally:
        server.stop()
    best = {c: max(rate for rate, _ in rounds[c]) for c in CONFIGS}
    cpu = {c: statistics.median(us for _, us in rounds[c]) for c in CONFIGS}
    print("\nbest throughput (cost vs none) | median CPU of this process per task (cost vs none)")
    for c in CONFIGS:
        cost = "" if c == "none" else f"  ({100 * (best['none'] - best[c]) / best['none']:+5.1f} %)"
        cpu_cost = "" if c == "none" else f"  ({100 * (cpu[c] - cpu['none']) / cpu['none']:+5.1f} %)"
        print(f"{c:<11} {best[c]:8,.0f} tasks/s{cost:<12} | {cpu[c]:6.0f} µs/task{cpu_cost}")
    print("\nthe hook calls alone (publish + received + started + succeeded, no I/O), CPU per task:")
    for c in CONFIGS[1:]:
        alone = statistics.median(hook_calls_us(c) for _ in range(3))
        print(f"{c:<11} {alone:6.1f} µs/task = {100 * alone / cpu['none']:4.1f} % of a task's CPU without hooks")


if __name__ == "__main__":
    main()
