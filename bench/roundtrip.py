"""First benchmark: 10,000 no-op tasks through one worker at concurrency 100, and round trips.

Starts its own redis-server (persistence off) on a free port and a worker subprocess
(``python -m aiocelery worker -A bench.tasks:app -c 100``), then measures from this process:

- throughput: send N tasks (gathered in chunks) and await every result; tasks/s over the whole run,
  and the send rate alone;
- latency: one task sent and awaited, ``--rounds`` times in sequence; p50 / p95 / p99 in ms.

Usage: ``python bench/roundtrip.py [--tasks 10000] [--rounds 1000] [--concurrency 100]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402


async def throughput(app: object, n: int, chunk: int = 1000) -> tuple[float, float]:
    from bench.tasks import noop

    start = time.perf_counter()
    results = []
    for i in range(0, n, chunk):
        results += await asyncio.gather(*(noop.delay(x) for x in range(i, min(n, i + chunk))))
    sent = time.perf_counter()
    values = await asyncio.gather(*(r.get(timeout=120) for r in results))
    done = time.perf_counter()
    if values != list(range(n)):
        raise SystemExit("wrong results!")
    return n / (done - start), n / (sent - start)


async def latency(rounds: int) -> list[float]:
    from bench.tasks import noop

    samples = []
    for i in range(rounds):
        t0 = time.perf_counter()
        r = await noop.delay(i)
        await r.get(timeout=10)
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def measure(args: argparse.Namespace) -> None:
    from bench.tasks import app

    async with app:
        await (await app.send_task("noop", args=(0,))).get(timeout=30)  # warm: worker is up
        rate, send_rate = await throughput(app, args.tasks)
        samples = await latency(args.rounds)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, worker on uvloop, concurrency {args.concurrency}")
    print(f"throughput: {args.tasks} tasks sent and awaited: {rate:,.0f} tasks/s end to end "
          f"(send alone: {send_rate:,.0f} tasks/s)")
    print(f"round trip (send, then await the result), {args.rounds} in sequence: "
          f"p50 {pct(samples, 50):.2f} ms, p95 {pct(samples, 95):.2f} ms, p99 {pct(samples, 99):.2f} ms, "
          f"mean {statistics.fmean(samples):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    server = RedisServer().start()
    os.environ["AIOCELERY_BROKER"] = server.url
    os.environ["AIOCELERY_KEY_PREFIX"] = f"bench-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, "-m", "aiocelery", "worker", "-A", "bench.tasks:app",
                               "-c", str(args.concurrency), "-l", "warning"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        asyncio.run(measure(args))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        server.stop()


if __name__ == "__main__":
    main()
