"""Celery adapter (runs in celery's venv, ``celery[redis]``). See ``_common`` for the CLI and the workloads.

Celery has no ``async def`` tasks: the tasks are plain functions (W3's is ``time.sleep(0.1)`` in
the threads pool), and the client is Celery's ordinary synchronous API.
Broker and result backend: Redis. Worker: ``celery -A celery_adapter worker -c N -l warning``, the
default prefork pool (W1, W2) or ``--pool threads`` (W3); everything else at Celery's defaults
(mingle, gossip, heartbeats, prefetch multiplier 4).
Results: ``AsyncResult.get(timeout=...)``: the Redis backend's pub/sub consumer.
Bulk: ``group(noop.s(i) for i in ...).apply_async()`` (one producer, one message per task).
Completion probe: every task's ``celery-task-meta-<id>`` key exists.
W7: the client is synchronous, so the ``delay()`` calls run in a pool of ``W7_THREADS`` threads
rather than in 1,000 coroutines. Each thread gets its own result backend (Celery keeps it
thread-local) while the threads share Celery's producer pool (``broker_pool_limit``, 10 by
default), so at most 10 sends are on the wire at once. W7's count: ``LLEN celery`` (the default
queue's list), ``n`` with no worker.

celery-amqp (``--amqp URL``): Celery's standard deployment, the broker on RabbitMQ through py-amqp
(``pyamqp://guest:guest@127.0.0.1:5672/<vhost>``) and the results in Redis; everything else as
above (publisher confirms off, prefetch x4, the queue ``celery`` declared durable by the first
send). W7's count: the depth of RabbitMQ queue ``celery``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import (
    SLEEP_S,
    amqp_count,
    amqp_url,
    count_check,
    emit,
    exec_module,
    keys_probe,
    parse_args,
    ready_then_wait,
    redis_url,
    sync_round_trips,
    version_of,
)
from celery import Celery, group

AMQP = amqp_url()
"""The benchmark's RabbitMQ vhost when the broker is RabbitMQ (celery-amqp), else None."""
app = Celery("bench", broker=AMQP.replace("amqp://", "pyamqp://", 1) if AMQP else redis_url(), backend=redis_url())
W7_THREADS = 100
"""W7: threads sending at once (Celery's client is synchronous; its producer pool allows 10 anyway)."""


@app.task(name="noop")
def noop(x: int) -> int:
    """W1, W2, W6, W7: return the argument."""
    return x


@app.task(name="sleep")
def sleep() -> None:
    """W3: wait on I/O (in the threads pool)."""
    time.sleep(SLEEP_S)


def result_keys(ids: list[str]) -> dict[str, Any]:
    return keys_probe(f"celery-task-meta-{task_id}" for task_id in ids)


def w1(n: int) -> None:
    t0 = time.perf_counter()
    ids = [noop.delay(i).id for i in range(n)]
    emit(enqueue_s=time.perf_counter() - t0, probe=result_keys(ids))


def w2(n: int, max_seconds: float) -> None:
    emit(**sync_round_trips(lambda i: noop.delay(i).get(timeout=30), n, max_seconds))


def w3(n: int) -> None:
    sleep.delay().get(timeout=90)  # the worker is up
    ready_then_wait()
    t0 = time.monotonic()
    ids = [sleep.delay().id for _ in range(n)]
    emit(enqueue_s=time.monotonic() - t0, probe=result_keys(ids))


def w6(n: int) -> None:
    t0 = time.perf_counter()
    group(noop.s(i) for i in range(n)).apply_async()
    emit(enqueue_s=time.perf_counter() - t0)


def w7(n: int) -> None:
    with ThreadPoolExecutor(W7_THREADS) as pool:
        t0 = time.perf_counter()
        list(pool.map(noop.delay, range(n)))
        queue = app.conf.task_default_queue
        emit(enqueue_s=time.perf_counter() - t0, queued=amqp_count(queue) if AMQP else count_check("LLEN", queue))


def main() -> None:
    args = parse_args()
    if args.command == "info":
        emit(library="celery", version=f"{version_of('celery')} (kombu {version_of('kombu')})",
             loop="none (prefork; threads pool for W3)", bulk="group(...).apply_async",
             broker=f"RabbitMQ through py-amqp {version_of('amqp')} (pyamqp://)" if AMQP else "Redis",
             result_api="AsyncResult.get(): sync, Redis backend pub/sub")
    elif args.command == "worker":
        pool = ["--pool", "threads"] if args.workload == "W3" else []
        exec_module("celery", "-A", "celery_adapter", "worker", "-c", str(args.concurrency), "-l", "warning", *pool)
    elif args.workload == "W1":
        w1(args.n)
    elif args.workload == "W2":
        w2(args.n, args.max_seconds)
    elif args.workload == "W3":
        w3(args.n)
    elif args.workload == "W6":
        w6(args.n)
    else:
        w7(args.n)
    app.close()


if __name__ == "__main__":
    main()
