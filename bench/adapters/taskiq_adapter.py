"""taskiq adapter (runs in taskiq's venv with taskiq-redis). See ``_common`` for the CLI and the workloads.

Broker and results as taskiq-redis's README shows them: ``RedisStreamBroker`` (acknowledged
streams) with ``RedisAsyncResultBackend`` (``result_ex_time`` set, as the README recommends).
Worker: ``taskiq worker taskiq_adapter:broker --workers 1 --max-async-tasks N --log-level WARNING``
(its CLI runs uvloop when installed; ``--workers 1``: one worker process, under taskiq's supervisor).
Results: ``await task.wait_result(timeout=...)``: polls every 0.2 s (its default ``check_interval``).
Bulk: none (n/a).
Completion probe: every task's result key exists (the results are stored under the task ids).
W7's count: ``XLEN`` of the broker's stream (``broker.queue_name``), ``n`` with no worker.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from _common import (
    CONCURRENT_SENDS,
    SLEEP_S,
    count_check,
    emit,
    exec_module,
    gather_limited,
    keys_probe,
    parse_args,
    ready_then_wait,
    redis_url,
    round_trips,
    run_workload,
    uvloop_version,
    version_of,
)
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

broker = RedisStreamBroker(url=redis_url()).with_result_backend(
    RedisAsyncResultBackend(redis_url=redis_url(), result_ex_time=3600))


@broker.task(task_name="noop")
async def noop(x: int) -> int:
    """W1, W2, W7: return the argument."""
    return x


@broker.task(task_name="sleep")
async def sleep() -> None:
    """W3: wait on I/O."""
    await asyncio.sleep(SLEEP_S)


async def w1(n: int) -> None:
    await broker.startup()
    ids = []
    t0 = time.perf_counter()
    for i in range(n):
        ids.append((await noop.kiq(i)).task_id)
    emit(enqueue_s=time.perf_counter() - t0, probe=keys_probe(ids))
    await broker.shutdown()


async def w2(n: int, max_seconds: float) -> None:
    await broker.startup()

    async def roundtrip(i: int) -> Any:
        result = await (await noop.kiq(i)).wait_result(timeout=30)
        return result.return_value

    emit(**await round_trips(roundtrip, n, max_seconds))
    await broker.shutdown()


async def w3(n: int) -> None:
    await broker.startup()
    await (await sleep.kiq()).wait_result(timeout=90)  # the worker is up
    ready_then_wait()
    t0 = time.monotonic()
    tasks = await gather_limited(sleep.kiq for _ in range(n))
    emit(enqueue_s=time.monotonic() - t0, probe=keys_probe(t.task_id for t in tasks))
    await broker.shutdown()


async def w7(n: int) -> None:
    await broker.startup()
    t0 = time.perf_counter()
    await gather_limited((partial(noop.kiq, i) for i in range(n)), limit=CONCURRENT_SENDS)
    emit(enqueue_s=time.perf_counter() - t0, queued=count_check("XLEN", broker.queue_name))
    await broker.shutdown()


def main() -> None:
    args = parse_args()
    if args.command == "info":
        emit(library="taskiq", version=f"{version_of('taskiq')} (taskiq-redis {version_of('taskiq-redis')})",
             loop=f"uvloop {uvloop_version()}", bulk=None,
             result_api="task.wait_result(): polls every 0.2 s (check_interval)")
    elif args.command == "worker":
        exec_module("taskiq", "worker", "taskiq_adapter:broker", "--workers", "1",
                    "--max-async-tasks", str(args.concurrency), "--log-level", "WARNING")
    else:
        run_workload(args, {"W1": w1, "W2": w2, "W3": w3, "W7": w7}, {"W6": "taskiq has no batch kick API"})

if __name__ == "__main__":
    main()
