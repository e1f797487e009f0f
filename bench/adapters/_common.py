"""What every adapter shares. Standard library only: each adapter runs in its own library's venv.

An adapter is a small CLI that the driver (``bench/run.py``) runs as a subprocess:

- ``python X_adapter.py info``: one JSON line (library, version, loop, bulk API, result API);
- ``python X_adapter.py worker --redis URL --concurrency N --workload W1``: becomes the library's
  worker, started the way its docs say (the driver measures this process and its children);
- ``python X_adapter.py client --redis URL --workload W1 --n 20000``: does the client side of one
  workload and prints one JSON line of measurements (see ``Client``).

With ``--amqp URL`` (after the command, on all three) the library's broker is the benchmark's
RabbitMQ vhost instead of Redis; Redis then only holds the results, and the completion probes
still read it. ``info`` may then print ``{"unavailable": reason}`` when the library cannot run on
RabbitMQ here (aiocelery before its AMQP broker is in the tree): the driver skips it and says why.

Workloads, client side:

- W1: send ``n`` no-op tasks one by one, each send awaited; print ``enqueue_s`` and a completion
  ``probe`` (how the driver sees, in Redis, that every result is stored).
- W2: send one task and await its result with the library's result API, ``n`` times in sequence
  (after a warm-up), at most ``max_seconds``; print ``samples_ms``, ``errors`` (round trips lost
  to a timeout or a wrong result, not in the samples) and ``warmup_failures``.
- W3: after a warm-up round trip, print ``{"ready": true}`` and wait for a line on stdin (the driver
  pauses the worker meanwhile); then send ``n`` tasks of ``sleep(0.1)`` and print ``enqueue_s`` and
  the completion ``probe`` (the driver resumes the worker and times it to the last result).
- W6: send ``n`` no-op tasks through the library's batch API; print ``enqueue_s`` (or ``na``).
- W7: send ``n`` no-op tasks with W1's single-send call, from ``CONCURRENT_SENDS`` coroutines at once
  (a synchronous client: from a thread pool), no worker running; print ``enqueue_s`` and ``queued``,
  a Redis command that replies how many tasks wait in the queue, or on RabbitMQ ``amqp_count(queue)``
  (the driver reads the queue's depth with ``rabbitmqctl``); the driver expects ``n``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any
from urllib.parse import urlsplit

WORKLOADS = ("W1", "W2", "W3", "W6", "W7")
SHARED_PORT = 6379
SLEEP_S = 0.1
"""The W3 task's sleep."""
WARMUP_TIMEOUT_S = 90.0
"""How long the first round trip may wait for a worker that is still starting."""
SEND_LIMIT = 100
"""Most sends in flight at once when an async client sends many tasks concurrently (W3)."""
CONCURRENT_SENDS = 1_000
"""W7: sends in flight at once, one coroutine each."""

Probe = dict[str, Any]
"""``{"kind": "zero", "command": [...]}`` (done when the reply is 0), ``{"kind": "keys", "keys": [...]}``
(done when every key exists) or ``{"kind": "field", "keys": [...], "field": f, "values": [...]}`` (done
when every hash's field holds one of the values)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The adapter CLI shared by every library."""
    parser = argparse.ArgumentParser(description="benchmark adapter (run by bench/run.py)")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="print the library, its version, loop and APIs as JSON")
    redis_help = "the benchmark's redis-server (default: $BENCH_REDIS_URL; never port 6379)"
    amqp_help = ("broker on RabbitMQ: the benchmark's vhost, amqp://guest:guest@127.0.0.1:5672/<vhost> "
                 "(default: $BENCH_AMQP_URL; none: the broker is Redis); results stay in Redis")
    info.add_argument("--amqp", default=os.environ.get("BENCH_AMQP_URL"), help=amqp_help)
    worker = commands.add_parser("worker", help="run the library's worker")
    worker.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL"), help=redis_help)
    worker.add_argument("--amqp", default=os.environ.get("BENCH_AMQP_URL"), help=amqp_help)
    worker.add_argument("--concurrency", type=int, default=100)
    worker.add_argument("--workload", choices=WORKLOADS, default="W1")
    client = commands.add_parser("client", help="run the client side of a workload; prints one JSON line")
    client.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL"), help=redis_help)
    client.add_argument("--amqp", default=os.environ.get("BENCH_AMQP_URL"), help=amqp_help)
    client.add_argument("--workload", choices=WORKLOADS, required=True)
    client.add_argument("--n", type=int, required=True)
    client.add_argument("--max-seconds", type=float, default=60.0, help="W2: stop after this long")
    args = parser.parse_args(argv)
    if args.command != "info":
        os.environ["BENCH_REDIS_URL"] = redis_url()  # checked; a worker's task module reads it again
    if args.amqp:
        os.environ["BENCH_AMQP_URL"] = args.amqp  # so does its broker URL
    if args.command == "worker":
        os.environ["BENCH_CONCURRENCY"] = str(args.concurrency)
        os.environ["BENCH_WORKLOAD"] = args.workload
    return args


def redis_url() -> str:
    """The benchmark's redis-server: ``--redis URL`` or ``BENCH_REDIS_URL``, with an explicit port other
    than 6379 (the shared Redis is never a target). Read when a task module is imported, so also by a
    worker that imports this module itself."""
    if sys.argv[1:2] == ["info"]:
        return "redis://127.0.0.1:1/0"  # never contacted: `info` only describes the library
    url = os.environ.get("BENCH_REDIS_URL")
    if "--redis" in sys.argv[:-1]:
        url = sys.argv[sys.argv.index("--redis") + 1]
    if not url:
        raise SystemExit("bench adapter: no Redis given (--redis URL or BENCH_REDIS_URL)")
    port = urlsplit(url).port
    if port is None or port == SHARED_PORT:
        raise SystemExit(f"bench adapter: refusing {url!r}: name the benchmark's own redis-server and its port")
    return url


def amqp_url() -> str | None:
    """The benchmark's RabbitMQ vhost (``--amqp URL`` or ``BENCH_AMQP_URL``) when the broker is RabbitMQ,
    else None. Read when a task module is imported, like ``redis_url``."""
    url = os.environ.get("BENCH_AMQP_URL")
    if "--amqp" in sys.argv[:-1]:
        url = sys.argv[sys.argv.index("--amqp") + 1]
    if url and not url.startswith("amqp://"):
        raise SystemExit(f"bench adapter: --amqp wants an amqp:// URL, got {url!r}")
    return url or None


def concurrency() -> int:
    """The worker concurrency the driver asked for."""
    return int(os.environ.get("BENCH_CONCURRENCY", "100"))


def emit(**fields: Any) -> None:
    """Print one JSON line for the driver."""
    print(json.dumps(fields), flush=True)


def version_of(dist: str) -> str:
    """An installed distribution's version, or '?'. Imported here, not at the top: a worker process
    imports this module too, and importlib.metadata (with email, zipfile, csv) weighs 1.4 MB there."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def uvloop_version() -> str | None:
    """uvloop's version when it is importable here."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return None
    return version_of("uvloop")


def install_uvloop_policy() -> None:
    """Make ``asyncio.new_event_loop()`` return a uvloop loop (for workers that create their own loop)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a client coroutine on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def run_workload(args: argparse.Namespace, workloads: dict[str, Callable[..., Coroutine[Any, Any, None]]],
                 unsupported: dict[str, str] | None = None) -> None:
    """Run the client workload ``args.workload`` from ``workloads`` (W2 also gets ``max_seconds``);
    one the library has no API for is reported with the reason in ``unsupported``."""
    reason = (unsupported or {}).get(args.workload)
    if reason is not None:
        emit(na=reason)
        return
    workload = workloads[args.workload]
    extra = (args.max_seconds,) if args.workload == "W2" else ()
    run(lambda: workload(args.n, *extra))


def exec_module(module: str, *args: str) -> None:
    """Become ``python -m module args...`` (same pid: the driver measures this very process)."""
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    os.chdir(here)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *args])


async def gather_limited(sends: Iterable[Callable[[], Awaitable[Any]]], limit: int = SEND_LIMIT) -> list[Any]:
    """Run the sends concurrently, at most ``limit`` at a time; results in order.

    ``limit`` coroutines each take the next send when their last one is done: the harness keeps
    ``limit`` coroutines alive, not one task per send (20,000 live tasks would cost every library
    garbage-collector passes that are the harness's, not the library's)."""
    results: list[Any] = []
    queue = iter(enumerate(sends))

    async def sender() -> None:
        for i, send in queue:
            value = await send()
            results.append((i, value))

    await asyncio.gather(*(sender() for _ in range(limit)))
    return [value for _, value in sorted(results, key=lambda item: item[0])]


async def round_trips(roundtrip: Callable[[int], Awaitable[Any]], n: int, max_seconds: float,
                      warmup: int = 5) -> dict[str, Any]:
    """W2: ``warmup`` good untimed round trips (the first waits for the worker), then up to ``n`` timed ones.

    ``roundtrip(i)`` sends one no-op task with argument ``i`` and returns the awaited result. A
    warm-up round trip that fails (a worker still starting may drop one) is counted and retried.
    """
    failures, good, deadline = 0, 0, time.monotonic() + WARMUP_TIMEOUT_S
    while good < warmup:
        expected = -1 - good
        try:
            value = await asyncio.wait_for(roundtrip(expected), WARMUP_TIMEOUT_S)
        except Exception as exc:  # counted and reported
            value = exc
        if value == expected:
            good += 1
            continue
        failures += 1
        print(f"warm-up round trip {expected} gave {value!r}", file=sys.stderr)
        if time.monotonic() > deadline:
            raise SystemExit("no good warm-up round trips: is the worker running?")
    samples: list[float] = []
    errors = 0
    stop_at = time.monotonic() + max_seconds
    for i in range(n):
        t0 = time.perf_counter()
        try:
            value = await roundtrip(i)
        except Exception as exc:  # counted and reported, not a sample
            value = exc
        if value == i:
            samples.append((time.perf_counter() - t0) * 1000)
        else:
            errors += 1
            print(f"round trip {i} gave {value!r} after {time.perf_counter() - t0:.3f} s", file=sys.stderr)
        if time.monotonic() > stop_at:
            break
    return {"samples_ms": samples, "errors": errors, "warmup_failures": failures}


def sync_round_trips(roundtrip: Callable[[int], Any], n: int, max_seconds: float, warmup: int = 5) -> dict[str, Any]:
    """``round_trips`` for a synchronous client."""
    for i in range(warmup):
        check(roundtrip(-1 - i), -1 - i)
    samples: list[float] = []
    errors = 0
    stop_at = time.monotonic() + max_seconds
    for i in range(n):
        t0 = time.perf_counter()
        try:
            value = roundtrip(i)
        except Exception as exc:  # counted and reported, not a sample
            value = exc
        if value == i:
            samples.append((time.perf_counter() - t0) * 1000)
        else:
            errors += 1
            print(f"round trip {i} gave {value!r} after {time.perf_counter() - t0:.3f} s", file=sys.stderr)
        if time.monotonic() > stop_at:
            break
    return {"samples_ms": samples, "errors": errors, "warmup_failures": 0}


def ready_then_wait() -> None:
    """W3: tell the driver the worker answered, and wait until it has paused the worker."""
    emit(ready=True)
    if not sys.stdin.readline():
        raise SystemExit("bench adapter: the driver went away")


def check(value: Any, expected: Any) -> None:
    """A no-op task must return its argument."""
    if value != expected:
        raise SystemExit(f"wrong result: got {value!r}, expected {expected!r}")


def zero_probe(*command: str) -> Probe:
    """Done when this Redis command replies 0 (e.g. the length of a queue that holds unfinished tasks)."""
    return {"kind": "zero", "command": list(command)}


def keys_probe(keys: Iterable[str]) -> Probe:
    """Done when every one of these result keys exists."""
    return {"kind": "keys", "keys": list(keys)}


def field_probe(keys: Iterable[str], field: str, values: Iterable[str]) -> Probe:
    """Done when every one of these hashes has ``field`` set to one of ``values`` (a final state)."""
    return {"kind": "field", "keys": list(keys), "field": field, "values": list(values)}


def count_check(*command: str) -> list[str]:
    """W7: a Redis command that replies how many tasks wait in the queue (no worker runs, so ``n``)."""
    return list(command)


def amqp_count(queue: str) -> dict[str, str]:
    """W7 on RabbitMQ: the queue of the benchmark's vhost whose depth the driver reads (``n``)."""
    return {"kind": "amqp", "queue": queue}
