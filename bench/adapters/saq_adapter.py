"""SAQ adapter (runs in saq's venv). See ``_common`` for the CLI and the workloads.

Worker: ``saq saq_adapter.settings`` (its CLI; logs at WARNING by default) with ``concurrency`` = N,
on uvloop (the event-loop policy is set when this module is imported). The queue's Redis pool is
sized for the concurrency (see ``queue``).
Results: ``await job.refresh(until_complete=...)`` then ``job.result``: woken by pub/sub (SAQ's
``queue.apply()`` / ``queue.map()`` poll every 0.5 s instead, so they are not used).
Bulk: none (``queue.map`` enqueues one by one and waits for results; ``queue.batch`` only aborts
on error), so n/a.
Completion probe: ``ZCARD saq:default:incomplete`` is 0 once every job is finished (it leaves that
set in the same transaction that stores the job with its result). W7's count: the same ``ZCARD``,
``n`` with no worker.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

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
from redis.asyncio import Redis
from saq.queue.redis import RedisQueue

install_uvloop_policy()

queue = RedisQueue(Redis.from_url(redis_url(), max_connections=concurrency() + 100))
"""``Queue.from_url(url)`` but with room in the pool: a SAQ worker holds one connection per free slot
(a blocking dequeue each), more than redis-py 8's default pool of 100 allows at -c 100 or 500."""


async def noop(ctx: dict[str, Any], *, x: int) -> int:
    """W1, W2, W7: return the argument."""
    return x


async def sleep(ctx: dict[str, Any]) -> None:
    """W3: wait on I/O."""
    await asyncio.sleep(SLEEP_S)


settings = {"queue": queue, "functions": [noop, sleep], "concurrency": concurrency()}
"""What ``saq saq_adapter.settings`` runs."""


def incomplete_probe() -> dict[str, Any]:
    return zero_probe("ZCARD", queue.namespace("incomplete"))


async def w1(n: int) -> None:
    await queue.connect()
    t0 = time.perf_counter()
    for i in range(n):
        await queue.enqueue("noop", x=i)
    emit(enqueue_s=time.perf_counter() - t0, probe=incomplete_probe())
    await queue.disconnect()


async def w2(n: int, max_seconds: float) -> None:
    await queue.connect()

    async def roundtrip(i: int) -> Any:
        job = await queue.enqueue("noop", x=i)
        assert job is not None
        await job.refresh(until_complete=30)
        return job.result

    emit(**await round_trips(roundtrip, n, max_seconds))
    await queue.disconnect()


async def w3(n: int) -> None:
    await queue.connect()
    job = await queue.enqueue("sleep")
    assert job is not None
    await job.refresh(until_complete=90)  # the worker is up
    ready_then_wait()
    t0 = time.monotonic()
    await gather_limited(lambda: queue.enqueue("sleep") for _ in range(n))
    emit(enqueue_s=time.monotonic() - t0, probe=incomplete_probe())
    await queue.disconnect()


async def w7(n: int) -> None:
    await queue.connect()
    t0 = time.perf_counter()
    await gather_limited((partial(queue.enqueue, "noop", x=i) for i in range(n)), limit=CONCURRENT_SENDS)
    emit(enqueue_s=time.perf_counter() - t0, queued=count_check("ZCARD", queue.namespace("incomplete")))
    await queue.disconnect()


def main() -> None:
    args = parse_args()
    if args.command == "info":
        emit(library="saq", version=version_of("saq"), loop=f"uvloop {uvloop_version()}", bulk=None,
             result_api="job.refresh(until_complete=): pub/sub (queue.apply/map poll every 0.5 s)")
    elif args.command == "worker":
        exec_module("saq", "saq_adapter.settings")
    else:
        run_workload(args, {"W1": w1, "W2": w2, "W3": w3, "W7": w7}, {"W6": "SAQ has no batch enqueue API"})

if __name__ == "__main__":
    main()
