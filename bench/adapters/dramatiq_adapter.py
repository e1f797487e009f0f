"""dramatiq adapter (runs in dramatiq's venv, ``dramatiq[rabbitmq,redis]``). See ``_common`` for the CLI.

RabbitMQ only (``--amqp URL``, the peer ``dramatiq-amqp``): dramatiq's ``RabbitmqBroker`` on the
benchmark's vhost, at its defaults (publisher confirms off, prefetch twice the threads), with the
``Results`` middleware on a ``RedisBackend`` (the benchmark's Redis), the actors ``store_results=True``;
the backend's Redis pool is sized for the threads (see ``backend``).
dramatiq has no ``async def`` actors by default: the actors are plain functions run by threads
(W3's is ``time.sleep(0.1)``), and the client is its ordinary synchronous API.
Worker: ``dramatiq dramatiq_adapter --processes 1 --threads N`` (its CLI: a supervisor and one
worker process of N threads).
Results: ``message.get_result(block=True, timeout=...)``: ``BRPOPLPUSH`` on the result's key, no polling.
Bulk: none (``group(...).run()`` enqueues one message at a time), so n/a.
Completion probe: every message's result key exists (``backend.build_message_key``).
W7: as for Celery, the synchronous ``send()`` calls run in a pool of ``W7_THREADS`` threads (dramatiq
keeps a RabbitMQ connection per thread). W7's count: the depth of RabbitMQ queue ``default``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dramatiq
import redis
from _common import (
    SLEEP_S,
    amqp_count,
    amqp_url,
    concurrency,
    emit,
    exec_module,
    keys_probe,
    parse_args,
    ready_then_wait,
    redis_url,
    sync_round_trips,
    version_of,
)
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

AMQP = amqp_url()
if AMQP is None:
    raise SystemExit("dramatiq adapter: dramatiq runs on RabbitMQ here: give --amqp URL (the peer dramatiq-amqp)")
backend = RedisBackend(client=redis.Redis.from_url(redis_url(), max_connections=concurrency() + 100))
"""``RedisBackend(url=...)`` but with room in the pool: each worker thread stores its results on a
connection of its own, more than redis-py 8's default pool of 100 allows at --threads 500 (W3:
``MaxConnectionsError: Too many connections``)."""
broker = RabbitmqBroker(url=AMQP)
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)
W7_THREADS = 100
"""W7: threads sending at once (dramatiq's client is synchronous)."""
RESULT_TIMEOUT_MS = 30_000


@dramatiq.actor(actor_name="noop", store_results=True)
def noop(x: int) -> int:
    """W1, W2, W7: return the argument."""
    return x


@dramatiq.actor(actor_name="sleep", store_results=True)
def sleep() -> None:
    """W3: wait on I/O (in a worker thread)."""
    time.sleep(SLEEP_S)


def result_keys(messages: list[Any]) -> dict[str, Any]:
    return keys_probe(backend.build_message_key(m) for m in messages)


def w1(n: int) -> None:
    t0 = time.perf_counter()
    messages = [noop.send(i) for i in range(n)]
    emit(enqueue_s=time.perf_counter() - t0, probe=result_keys(messages))


def w2(n: int, max_seconds: float) -> None:
    emit(**sync_round_trips(lambda i: noop.send(i).get_result(block=True, timeout=RESULT_TIMEOUT_MS), n,
                            max_seconds))


def w3(n: int) -> None:
    sleep.send().get_result(block=True, timeout=90_000)  # the worker is up
    ready_then_wait()
    t0 = time.monotonic()
    messages = [sleep.send() for _ in range(n)]
    emit(enqueue_s=time.monotonic() - t0, probe=result_keys(messages))


def w7(n: int) -> None:
    with ThreadPoolExecutor(W7_THREADS) as pool:
        t0 = time.perf_counter()
        list(pool.map(noop.send, range(n)))
        emit(enqueue_s=time.perf_counter() - t0, queued=amqp_count(noop.queue_name))


def main() -> None:
    args = parse_args()
    if args.command == "info":
        emit(library="dramatiq", version=f"{version_of('dramatiq')} (pika {version_of('pika')})",
             loop="none (threads: --processes 1 --threads N)", bulk=None,
             broker="RabbitMQ through pika (RabbitmqBroker)",
             result_api="message.get_result(block=True): Results middleware, Redis BRPOPLPUSH")
    elif args.command == "worker":
        exec_module("dramatiq", "dramatiq_adapter", "--processes", "1", "--threads", str(args.concurrency))
    elif args.workload == "W1":
        w1(args.n)
    elif args.workload == "W2":
        w2(args.n, args.max_seconds)
    elif args.workload == "W3":
        w3(args.n)
    elif args.workload == "W6":
        emit(na="dramatiq has no batch enqueue API (group(...).run() enqueues one message at a time)")
    else:
        w7(args.n)
    broker.close()


if __name__ == "__main__":
    main()
