"""aiocelery adapter (runs in the project's venv). See ``_common`` for the CLI and the workloads.

Worker: ``python -m aiocelery worker -A aiocelery_adapter:app -c N -l warning`` (uvloop).
Results: ``await (await task.delay(x)).get(timeout=...)``, woken by pub/sub.
Bulk: ``await app.send_many([noop.s(i) for i in ...])``.
Completion probe: ``XLEN <prefix>:{queue}:stream`` is 0 once every delivery is settled (the result
is stored and the entry deleted in the same script; README, "Redis data model"). W7's count: the
same ``XLEN``, ``n`` with no worker running.
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
    parse_args,
    ready_then_wait,
    redis_url,
    round_trips,
    run_workload,
    uvloop_version,
    version_of,
    zero_probe,
)

from aiocelery import App, Config

app = App(Config(broker=redis_url()))


@app.task(name="noop")
async def noop(x: int) -> int:
    """W1, W2, W6, W7: return the argument."""
    return x


@app.task(name="sleep")
async def sleep() -> None:
    """W3: wait on I/O."""
    await asyncio.sleep(SLEEP_S)


def stream_key() -> str:
    """The default queue's ready stream (README's data model: ``<prefix>:{Q}:stream``)."""
    return f"{app.config.key_prefix}:{{{app.config.default_queue}}}:stream"


async def w1(n: int) -> None:
    async with app:
        t0 = time.perf_counter()
        for i in range(n):
            await noop.delay(i)
        emit(enqueue_s=time.perf_counter() - t0, probe=zero_probe("XLEN", stream_key()))


async def w2(n: int, max_seconds: float) -> None:
    async def roundtrip(i: int) -> Any:
        return await (await noop.delay(i)).get(timeout=30)

    async with app:
        emit(**await round_trips(roundtrip, n, max_seconds))


async def w3(n: int) -> None:
    async with app:
        await (await sleep.delay()).get(timeout=90)  # the worker is up
        ready_then_wait()
        t0 = time.monotonic()
        await gather_limited(sleep.delay for _ in range(n))
        emit(enqueue_s=time.monotonic() - t0, probe=zero_probe("XLEN", stream_key()))


async def w6(n: int) -> None:
    async with app:
        t0 = time.perf_counter()
        await app.send_many([noop.s(i) for i in range(n)])
        emit(enqueue_s=time.perf_counter() - t0)


async def w7(n: int) -> None:
    async with app:
        t0 = time.perf_counter()
        await gather_limited((partial(noop.delay, i) for i in range(n)), limit=CONCURRENT_SENDS)
        emit(enqueue_s=time.perf_counter() - t0, queued=count_check("XLEN", stream_key()))


def main() -> None:
    args = parse_args()
    if args.command == "info":
        emit(library="aiocelery", version=version_of("aiocelery"), loop=f"uvloop {uvloop_version()}",
             bulk="app.send_many", result_api="AsyncResult.get(): pub/sub, no polling")
    elif args.command == "worker":
        exec_module("aiocelery", "worker", "-A", "aiocelery_adapter:app", "-c", str(args.concurrency),
                    "-l", "warning")
    else:
        run_workload(args, {"W1": w1, "W2": w2, "W3": w3, "W6": w6, "W7": w7})

if __name__ == "__main__":
    main()
