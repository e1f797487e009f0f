"""Retries, countdowns, expiry, time limits, revoke, rate limits, dedup and periodic tasks.

Runs in one process on memory:// (set AIOCELERY_BROKER=redis://... to use Redis):

    python examples/time_features.py
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

from aiocelery import App, Config, Retry, SoftTimeLimitExceeded, TaskFailed, TaskRevoked, current_task

app = App(Config(broker=os.environ.get("AIOCELERY_BROKER", "memory://"), key_prefix="time-demo"))


@app.task(autoretry_for=(ConnectionError,), max_retries=5, retry_backoff="fibonacci", retry_backoff_s=0.1)
async def fetch_page(url: str) -> str:
    """Fails twice, then succeeds: retried with Fibonacci backoff and full jitter."""
    ctx = current_task()
    assert ctx is not None
    if ctx.retries < 2:
        raise ConnectionError(f"{url} unreachable (try {ctx.attempt})")
    return f"<html>{url}</html>"


@app.task(max_retries=3)
async def poll_job(job: str) -> str:
    """Asks to be run again later with an explicit countdown (Machinery's ErrRetryTaskLater)."""
    ctx = current_task()
    assert ctx is not None
    if ctx.retries == 0:
        raise Retry(countdown=0.2)
    return f"{job} done after {ctx.retries} retry"


@app.task(soft_time_limit_s=0.2, time_limit_s=1.0)
async def crunch() -> str:
    """Gets SoftTimeLimitExceeded inside at 0.2 s and cleans up before the hard limit."""
    try:
        await asyncio.sleep(10)
    except SoftTimeLimitExceeded:
        return "stopped cleanly at the soft limit"
    return "finished"


@app.task
async def long_job() -> None:
    """Runs until revoked."""
    await asyncio.sleep(60)


@app.task(rate_limit="20/s")
async def call_api(i: int) -> int:
    """At most 20 starts per second across every worker of the cluster."""
    return i


@app.periodic(every=timedelta(seconds=0.5))
async def heartbeat() -> None:
    """Sent by the scheduler that runs inside every worker, exactly once per fire time."""
    print("  heartbeat at", time.strftime("%H:%M:%S"))


async def main() -> None:
    async with app, app.worker(concurrency=20):
        print("retries:", await (await fetch_page.delay("example.org")).get(timeout=10))
        print("explicit retry:", await (await poll_job.delay("export")).get(timeout=10))

        later = await fetch_page.apply_async(("later.org",), countdown=0.5)
        print("countdown: state right away is", await later.state())

        stale = await crunch.apply_async(countdown=0.3, expires=0.1)
        try:
            await stale.get(timeout=5)
        except TaskRevoked as exc:
            print("expiry:", exc.reason)

        print("soft limit:", await (await crunch.delay()).get(timeout=5))

        running = await long_job.delay()
        await asyncio.sleep(0.2)
        await running.revoke(terminate=True)
        try:
            await running.get(timeout=5)
        except TaskRevoked as exc:
            print("revoke:", exc.reason)

        first = await call_api.apply_async((1,), dedup_key="call-1")
        again = await call_api.apply_async((1,), dedup_key="call-1")
        print("dedup: same task id:", first.id == again.id)

        t0 = time.perf_counter()
        results = await app.send_many([call_api.s(i) for i in range(40)])
        await asyncio.gather(*(r.get(timeout=10) for r in results))
        print(f"rate limit: 40 calls at 20/s took {time.perf_counter() - t0:.1f} s")
        try:
            await (await fetch_page.apply_async(("x",), queue="nowhere")).get(timeout=0.2)
        except TaskFailed:
            pass
        except TimeoutError:
            print("timeout: nobody consumes queue 'nowhere', get() raised ResultTimeout")
        print("countdown result:", await later.get(timeout=5))


if __name__ == "__main__":
    asyncio.run(main())
