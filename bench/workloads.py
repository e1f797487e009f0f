"""The workloads, driven identically for every library: W1 (+ W4, W5), W2, W3, W6 and W7.

W7 sends n no-op tasks with W1's single-send call from 1,000 concurrent coroutines (Celery: a thread
pool), with no worker running, and then checks that the queue holds all n.

Each function runs one workload once against a freshly flushed benchmark Redis and returns
``{metric key: value}`` (see ``report.METRICS``); it raises ``RunError`` when that run failed. A
library of the RabbitMQ section also gets its vhost recreated before the run (``Context.flush``):
its tasks go through RabbitMQ, its results and the completion probes stay in that Redis.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from .libraries import Library
from .probes import ProbeTimeout, count, wait_done
from .processes import ClientProcess, RunError, WorkerProcess
from .procstat import MemorySampler, cpu_seconds
from .rabbitmq_ctl import BenchRabbitMQ
from .redis_ctl import BenchRedis


@dataclass(frozen=True)
class Sizes:
    """How big each workload is."""

    w1_tasks: int = 20_000
    w1_concurrency: int = 100
    w2_rounds: int = 1_000
    w2_max_s: float = 60.0
    """A library whose result API polls (0.2-0.5 s a round trip) stops after this long."""
    w3_tasks: int = 2_000
    w3_concurrency: int = 500
    w6_tasks: int = 20_000
    w7_tasks: int = 20_000


FULL = Sizes()
QUICK = Sizes(w1_tasks=5_000, w2_rounds=300, w2_max_s=20.0, w6_tasks=5_000, w7_tasks=5_000)


@dataclass
class Context:
    """What every run needs: the Redis, the sizes, where logs go; the RabbitMQ vhost for the RabbitMQ section."""

    redis: BenchRedis
    sizes: Sizes
    logs: Path
    rabbit: BenchRabbitMQ | None = None

    def log(self, lib: Library, what: str) -> Path:
        return self.logs / f"{lib.name}-{what}.log"

    def flush(self, lib: Library) -> None:
        """Empty the benchmark's Redis, and for a library on RabbitMQ its vhost too."""
        self.redis.flush()
        if lib.broker == "amqp":
            try:
                self.amqp.reset()
            except RuntimeError as exc:  # rabbitmqctl failed (RabbitMQError)
                raise RunError(f"could not recreate the RabbitMQ vhost: {exc}") from None

    @property
    def amqp(self) -> BenchRabbitMQ:
        if self.rabbit is None:
            raise RunError("a library on RabbitMQ, but the benchmark has no RabbitMQ vhost")
        return self.rabbit


def w1(ctx: Context, lib: Library) -> dict[str, float]:
    """W1 throughput, with W4 (worker peak memory) and W5 (CPU, commands) measured on the way."""
    n = ctx.sizes.w1_tasks
    ctx.flush(lib)
    before = ctx.redis.snapshot()
    rabbit_before = ctx.amqp.cpu_s() if lib.broker == "amqp" else None
    client = ClientProcess(lib, ctx.redis.url, "W1", n, ctx.log(lib, "W1-client"))
    sent = client.result(timeout_s=60 + n / 100)
    client.finish()
    worker = WorkerProcess(lib, ctx.redis.url, ctx.sizes.w1_concurrency, "W1", ctx.log(lib, "W1-worker")).start()
    sampler = MemorySampler(worker.pid).start()
    try:
        probe = wait_done(ctx.redis.redis, sent["probe"], timeout_s=120 + n / 50)
        worker.check_alive()
        cpu = cpu_seconds(worker.pid)
        after = ctx.redis.snapshot()
        rabbit_after = ctx.amqp.cpu_s() if lib.broker == "amqp" else None
    except ProbeTimeout as exc:
        worker.check_alive()
        raise RunError(f"drain: {exc}") from None
    finally:
        rss_mb = sampler.stop()
        worker.stop()
    if probe.first_check_done:
        raise RunError("the completion probe saw every result before the worker started: the probe is wrong")
    per_1k = n / 1000
    values = {
        "w1_enqueue": n / sent["enqueue_s"],
        "w1_drain": n / (probe.done_at - worker.started),
        "w4_rss": rss_mb,
        "w5_worker_cpu": cpu / per_1k,
        "w5_redis_cpu": (after.cpu_s - before.cpu_s) / per_1k,
        "w5_commands": (after.calls - before.calls - probe.calls) / n,
    }
    if rabbit_before is not None and rabbit_after is not None:
        values["w5_rabbitmq_cpu"] = (rabbit_after - rabbit_before) / per_1k
    return values


def w2(ctx: Context, lib: Library) -> dict[str, float]:
    """W2 latency: an idle worker, one task sent and its result awaited, in sequence."""
    ctx.flush(lib)
    worker = WorkerProcess(lib, ctx.redis.url, ctx.sizes.w1_concurrency, "W2", ctx.log(lib, "W2-worker")).start()
    try:
        client = ClientProcess(lib, ctx.redis.url, "W2", ctx.sizes.w2_rounds, ctx.log(lib, "W2-client"),
                               max_seconds=ctx.sizes.w2_max_s)
        out = client.result(timeout_s=ctx.sizes.w2_max_s + 180)
        client.finish()
    finally:
        worker.stop()
    samples = sorted(float(s) for s in out["samples_ms"])
    if not samples:
        raise RunError("no round trips measured")
    if out.get("warmup_failures"):
        print(f"bench: note: {lib.name} W2: {out['warmup_failures']} warm-up round trip(s) failed "
              f"(see {ctx.log(lib, 'W2-client')})")
    return {"w2_p50": _pct(samples, 50), "w2_p95": _pct(samples, 95), "w2_p99": _pct(samples, 99),
            "w2_mean": statistics.fmean(samples), "w2_max": samples[-1], "w2_n": len(samples),
            "w2_errors": int(out.get("errors", 0))}


def w3(ctx: Context, lib: Library) -> dict[str, float]:
    """W3 I/O concurrency: n tasks of sleep(0.1) at concurrency 500, from the worker's resumption.

    The worker starts and answers one task; then it is paused (SIGSTOP to its process group) while
    the client queues the n tasks, and timed from its resumption (SIGCONT) to the last stored
    result, so neither its start-up nor the sending speed is in the number (ideal: n / 500 x 0.1 s).
    """
    ctx.flush(lib)
    worker = WorkerProcess(lib, ctx.redis.url, ctx.sizes.w3_concurrency, "W3", ctx.log(lib, "W3-worker")).start()
    try:
        client = ClientProcess(lib, ctx.redis.url, "W3", ctx.sizes.w3_tasks, ctx.log(lib, "W3-client"))
        client.result(timeout_s=120)  # {"ready": true}: the worker answered
        worker.pause()
        client.send("go")
        sent = client.result(timeout_s=120)
        client.finish()
        resumed = time.monotonic()
        worker.resume()
        probe = wait_done(ctx.redis.redis, sent["probe"], timeout_s=120)
    except ProbeTimeout as exc:
        worker.check_alive()
        raise RunError(f"W3: {exc}") from None
    finally:
        worker.stop()
    if probe.first_check_done:
        raise RunError("the completion probe saw every result before the worker resumed: the probe is wrong")
    return {"w3_wall": probe.done_at - resumed, "w3_send": float(sent["enqueue_s"])}


def w6(ctx: Context, lib: Library) -> dict[str, float]:
    """W6 bulk: n tasks through the library's batch API, no worker running."""
    if not lib.has_bulk:
        return {}
    ctx.flush(lib)
    client = ClientProcess(lib, ctx.redis.url, "W6", ctx.sizes.w6_tasks, ctx.log(lib, "W6-client"))
    sent = client.result(timeout_s=60 + ctx.sizes.w6_tasks / 100)
    client.finish()
    return {"w6_bulk": ctx.sizes.w6_tasks / float(sent["enqueue_s"])}


def w7(ctx: Context, lib: Library) -> dict[str, float]:
    """W7 concurrent enqueue: n tasks through W1's single-send call, 1,000 at once, no worker running.

    Then checks, in Redis, that the queue holds every one of the n tasks (the adapter names the count).
    """
    n = ctx.sizes.w7_tasks
    ctx.flush(lib)
    client = ClientProcess(lib, ctx.redis.url, "W7", n, ctx.log(lib, "W7-client"))
    sent = client.result(timeout_s=60 + n / 100)
    client.finish()
    if isinstance(sent["queued"], dict) and sent["queued"].get("kind") == "amqp":
        queue = str(sent["queued"]["queue"])
        try:
            queued = ctx.amqp.queue_depth(queue, expected=n)
        except RuntimeError as exc:  # rabbitmqctl failed (RabbitMQError)
            raise RunError(f"could not read the depth of RabbitMQ queue {queue!r}: {exc}") from None
        where = f"RabbitMQ queue {queue!r} of vhost {ctx.amqp.vhost}"
    else:
        command = [str(a) for a in sent["queued"]]
        queued = count(ctx.redis.redis, command)
        where = " ".join(command)
    if queued != n:
        raise RunError(f"{queued:,} of {n:,} tasks queued after the sends ({where})")
    return {"w7_concurrent": n / float(sent["enqueue_s"])}


def _pct(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


WORKLOADS = {"W1": w1, "W2": w2, "W3": w3, "W6": w6, "W7": w7}
"""W4 and W5 are measured during W1."""
