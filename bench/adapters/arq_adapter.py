"""arq adapter (runs in arq's venv). See ``_common`` for the CLI and the workloads.

Worker: ``arq arq_adapter.WorkerSettings`` (its CLI) with ``max_jobs`` = concurrency, on uvloop (the
event-loop policy is set when this module is imported), arq's loggers at WARNING.
Results: ``await job.result(timeout=...)``: polls Redis every 0.5 s (its default ``poll_delay``); the
worker itself polls the queue every 0.5 s when idle (``poll_delay``).
Bulk: none (n/a).
Completion probe: ``ZCARD arq:queue`` is 0 once every job is finished (the job leaves the queue in
the same transaction that stores its result). W7's count: the same ``ZCARD``, ``n`` with no worker.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any, ClassVar

from _common import (
    CONCURRENT_SENDS,
    SLEEP_S,
    concurrency,
    count_check,
    emit,
    exec_module,
    gather_limited,
    install_uvloop_policy,
    parse_args,
    ready_then_wait,
    redis_url,
    round_trips,
    run_workload,
    uvloop_version,
    version_of,
    zero_probe,
)
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name

install_uvloop_policy()

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"arq.standard": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["arq.standard"], "level": "WARNING"}},
}
"""Like arq's default log config but at WARNING: no line per job (as every worker here runs)."""


async def noop(ctx: dict[str, Any], x: int) -> int:
    """W1, W2, W7: return the argument."""
    return x


async def sleep(ctx: dict[str, Any]) -> None:
    """W3: wait on I/O."""
    await asyncio.sleep(SLEEP_S)


class WorkerSettings:
    """What ``arq arq_adapter.WorkerSettings`` runs."""

    functions: ClassVar[list[Any]] = [noop, sleep]
    redis_settings = RedisSettings.from_dsn(redis_url())
    max_jobs = concurrency()


async def pool() -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(redis_url()))


async def w1(n: int) -> None:
    redis = await pool()
    t0 = time.perf_counter()
    for i in range(n):
        await redis.enqueue_job("noop", i)
    emit(enqueue_s=time.perf_counter() - t0, probe=zero_probe("ZCARD", default_queue_name))
    await redis.aclose()


async def w2(n: int, max_seconds: float) -> None:
    redis = await pool()

    async def roundtrip(i: int) -> Any:
        job = await redis.enqueue_job("noop", i)
        assert job is not None
        return await job.result(timeout=30)

    emit(**await round_trips(roundtrip, n, max_seconds))
    await redis.aclose()


async def w3(n: int) -> None:
    redis = await pool()
    job = await redis.enqueue_job("sleep")
    assert job is not None
    await job.result(timeout=90)  # the worker is up
    ready_then_wait()
    t0 = time.monotonic()
    await gather_limited(lambda: redis.enqueue_job("sleep") for _ in range(n))
    emit(enqueue_s=time.monotonic() - t0, probe=zero_probe("ZCARD", default_queue_name))
    await redis.aclose()


async def w7(n: int) -> None:
    redis = await pool()
    t0 = time.perf_counter()
    await gather_limited((partial(redis.enqueue_job, "noop", i) for i in range(n)), limit=CONCURRENT_SENDS)
    emit(enqueue_s=time.perf_counter() - t0, queued=count_check("ZCARD", default_queue_name))
    await redis.aclose()


def main() -> None:
    args = parse_args()
    if args.command == "info":
        emit(library="arq", version=version_of("arq"), loop=f"uvloop {uvloop_version()}", bulk=None,
             result_api="job.result(): polls every 0.5 s (poll_delay); idle worker polls the queue every 0.5 s")
    elif args.command == "worker":
        exec_module("arq", "arq_adapter.WorkerSettings", "--custom-log-dict", "arq_adapter.LOG_CONFIG")
    else:
        run_workload(args, {"W1": w1, "W2": w2, "W3": w3, "W7": w7}, {"W6": "arq has no batch enqueue API"})

if __name__ == "__main__":
    main()
