"""aiocelery adapter (runs in the project's venv). See ``_common`` for the CLI and the workloads.

Worker: ``python -m aiocelery worker -A aiocelery_adapter:app -c N -l warning`` (uvloop).
Results: ``await (await task.delay(x)).get(timeout=...)``, woken by pub/sub.
Bulk: ``await app.send_many([noop.s(i) for i in ...])``.
Completion probe: ``XLEN <prefix>:{queue}:stream`` is 0 once every delivery is settled (the result
is stored and the entry deleted in the same script; README, "Redis data model"). W7's count: the
same ``XLEN``, ``n`` with no worker running.

aiocelery-amqp (``--amqp URL``): ``Config(broker=<the vhost's amqp:// URL>, result_backend=<Redis>)``,
everything else the same (installed with the ``amqp`` extra). Completion probe: every task's record
(``<prefix>:task:<id>`` in the result backend's Redis) is in a final state (the records exist from
the send on). W7's count: the depth of RabbitMQ queue ``<default_queue>``. Until the AMQP broker
is in the tree Config refuses amqp:// URLs, and ``info`` says so (``unavailable``): the driver
skips aiocelery-amqp and runs the rest.
"""

from __future__ import annotations

import asyncio
import sys
import time
from functools import partial
from typing import Any

from _common import (
    CONCURRENT_SENDS,
    SLEEP_S,
    amqp_count,
    amqp_url,
    count_check,
    emit,
    exec_module,
    field_probe,
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

from aiocelery import App, Config, ConfigError
from aiocelery.brokers.redis.keys import Keys
from aiocelery.states import READY_STATES

AMQP = amqp_url()
"""The benchmark's RabbitMQ vhost when the broker is RabbitMQ (aiocelery-amqp), else None."""


def _app() -> App:
    if AMQP is None:
        return App(Config(broker=redis_url()))
    try:
        return App(Config(broker=AMQP, result_backend=redis_url()))
    except ConfigError as exc:
        if sys.argv[1:2] != ["info"]:
            raise
        emit(unavailable=f"aiocelery {version_of('aiocelery')} refuses Config(broker='amqp://...', "
                         f"result_backend='redis://...'): {exc}")
        raise SystemExit(0) from None


app = _app()


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


def done_probe(ids: list[str]) -> dict[str, Any]:
    """When every task sent is settled: on Redis the stream is empty; on RabbitMQ every task's
    record (in the result backend's Redis) is final."""
    if AMQP is None:
        return zero_probe("XLEN", stream_key())
    keys = Keys(app.config.key_prefix)
    return field_probe((keys.task(task_id) for task_id in ids), "state", sorted(READY_STATES))


def queued_check() -> Any:
    """W7: how many tasks wait in the default queue (``n`` with no worker)."""
    return amqp_count(app.config.default_queue) if AMQP else count_check("XLEN", stream_key())


async def w1(n: int) -> None:
    ids: list[str] = []
    async with app:
        t0 = time.perf_counter()
        for i in range(n):
            ids.append((await noop.delay(i)).id)
        emit(enqueue_s=time.perf_counter() - t0, probe=done_probe(ids))


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
        sent = await gather_limited(sleep.delay for _ in range(n))
        emit(enqueue_s=time.monotonic() - t0, probe=done_probe([r.id for r in sent]))


async def w6(n: int) -> None:
    async with app:
        t0 = time.perf_counter()
        await app.send_many([noop.s(i) for i in range(n)])
        emit(enqueue_s=time.perf_counter() - t0)


async def w7(n: int) -> None:
    async with app:
        t0 = time.perf_counter()
        await gather_limited((partial(noop.delay, i) for i in range(n)), limit=CONCURRENT_SENDS)
        emit(enqueue_s=time.perf_counter() - t0, queued=queued_check())


def main() -> None:
    args = parse_args()
    if args.command == "info":
        emit(library="aiocelery", version=version_of("aiocelery"), loop=f"uvloop {uvloop_version()}",
             bulk="app.send_many", result_api="AsyncResult.get(): pub/sub, no polling",
             broker=f"RabbitMQ through aio-pika {version_of('aio-pika')}" if AMQP else "Redis")
    elif args.command == "worker":
        exec_module("aiocelery", "worker", "-A", "aiocelery_adapter:app", "-c", str(args.concurrency),
                    "-l", "warning")
    else:
        run_workload(args, {"W1": w1, "W2": w2, "W3": w3, "W6": w6, "W7": w7})

if __name__ == "__main__":
    main()
