"""streaQ adapter (runs in streaq's venv). See ``_common`` for the CLI and the workloads.

Worker: ``streaq run streaq_adapter:worker`` (its CLI) with ``concurrency`` = N, on uvloop through
anyio (``anyio_kwargs={"use_uvloop": True}``). The tasks are ``silent=True``: streaQ's CLI logs at
INFO and would otherwise print two lines per task (every worker here runs without per-task logs).
Results: ``await task.result(timeout=...)``: pub/sub (one subscription per waiter).
Bulk: ``await worker.enqueue_many([noop.enqueue(i) for i in ...])`` (one pipeline).
Completion probe: every task's result key exists. W7's count: ``XLEN`` of the default priority's
stream (``worker.stream_key`` + the last of ``worker.priorities``), ``n`` with no worker.
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
    keys_probe,
    parse_args,
    ready_then_wait,
    redis_url,
    round_trips,
    run_workload,
    uvloop_version,
    version_of,
)
from streaq import Worker

worker = Worker(redis_url=redis_url(), concurrency=concurrency(), anyio_kwargs={"use_uvloop": True})


@worker.task(name="noop", silent=True)
async def noop(x: int) -> int:
    """W1, W2, W6, W7: return the argument."""
    return x


@worker.task(name="sleep", silent=True)
async def sleep() -> None:
    """W3: wait on I/O."""
    await asyncio.sleep(SLEEP_S)


def result_keys(ids: list[str]) -> dict[str, Any]:
    return keys_probe(worker.results_key + task_id for task_id in ids)


async def w1(n: int) -> None:
    async with worker:
        ids = []
        t0 = time.perf_counter()
        for i in range(n):
            ids.append((await noop.enqueue(i)).id)
        emit(enqueue_s=time.perf_counter() - t0, probe=result_keys(ids))


async def w2(n: int, max_seconds: float) -> None:
    async def roundtrip(i: int) -> Any:
        return (await (await noop.enqueue(i)).result(timeout=30)).result

    async with worker:
        emit(**await round_trips(roundtrip, n, max_seconds))


async def w3(n: int) -> None:
    async with worker:
        await (await sleep.enqueue()).result(timeout=90)  # the worker is up
        ready_then_wait()
        t0 = time.monotonic()
        tasks = await gather_limited(sleep.enqueue for _ in range(n))
        emit(enqueue_s=time.monotonic() - t0, probe=result_keys([t.id for t in tasks]))


async def w6(n: int) -> None:
    async with worker:
        t0 = time.perf_counter()
        await worker.enqueue_many([noop.enqueue(i) for i in range(n)])
        emit(enqueue_s=time.perf_counter() - t0)


async def w7(n: int) -> None:
    async with worker:
        t0 = time.perf_counter()
        await gather_limited((partial(noop.enqueue, i) for i in range(n)), limit=CONCURRENT_SENDS)
        emit(enqueue_s=time.perf_counter() - t0, queued=count_check("XLEN", worker.stream_key + worker.priorities[-1]))


def main() -> None:
    args = parse_args()
    if args.command == "info":
        emit(library="streaq", version=version_of("streaq"), loop=f"uvloop {uvloop_version()} (anyio)",
             bulk="worker.enqueue_many", result_api="task.result(): pub/sub, one subscription per waiter")
    elif args.command == "worker":
        exec_module("streaq", "run", "streaq_adapter:worker")
    else:
        run_workload(args, {"W1": w1, "W2": w2, "W3": w3, "W6": w6, "W7": w7})

if __name__ == "__main__":
    main()
