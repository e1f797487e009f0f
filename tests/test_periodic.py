"""Periodic tasks: the virtual clock on memory://, and schedulers racing on a real Redis."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aiocelery import App, Config, current_task
from aiocelery.testing import VirtualClock
from aiocelery.timing.schedule import Cron

from .conftest import make_config
from .helpers import eventually, settled

ROOT = Path(__file__).resolve().parent.parent


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.005)


async def test_virtual_clock_fires_intervals_cron_countdowns_and_retries() -> None:
    clock = VirtualClock(start_ms=1_700_000_000_000)  # 2023-11-14 22:13:20 UTC
    app = App(Config(broker="memory://"), clock=clock)
    ticks: list[int] = []
    crons: list[int] = []
    attempts: list[int] = []

    @app.periodic(every=timedelta(seconds=10))
    async def tick() -> None:
        ticks.append(clock.now_ms())

    @app.periodic("*/5 * * * *")
    def five() -> None:
        crons.append(clock.now_ms())

    @app.task(name="flaky", autoretry_for=(ValueError,), max_retries=2, retry_backoff_s=600, retry_jitter=False)
    async def flaky() -> str:
        ctx = current_task()
        assert ctx is not None
        attempts.append(ctx.attempt)
        if ctx.retries < 2:
            raise ValueError("not yet")
        return "done"

    @app.task(name="much_later")
    async def much_later() -> str:
        return "later"

    async with app, app.worker(concurrency=4):
        later = await much_later.apply_async(countdown=86_400)
        retried = await flaky.delay()
        await settle()
        for _ in range(30):  # five virtual minutes, ten seconds at a time
            clock.advance(10)
            await settle()
        assert await retried.state() == "RETRY"  # the first retry waits 600 s, the second 1200 s
        clock.advance(300)
        await settle()
        assert attempts == [1, 2]
        clock.advance(1200)
        await settle()
        assert await retried.get(timeout=1) == "done"
        assert await later.state() == "PENDING"
        clock.advance(86_400)
        assert await later.get(timeout=1) == "later"
    # the start (exactly a fire time) and 30 ticks 10 s apart, then one per long jump:
    # missed="latest" runs only the newest missed fire time
    assert all(b - a == 10_000 for a, b in itertools.pairwise(ticks[:31]))
    assert 33 <= len(ticks) <= 34
    assert crons[0] == 1_700_000_100_000  # 22:15:00 UTC, the one */5 in the first five minutes
    assert 3 <= len(crons) <= 4  # then one per long jump
    assert attempts == [1, 2, 3]


def test_periodic_registration_errors() -> None:
    app = App(make_config("memory", "", "x"))
    with pytest.raises(TypeError, match="not both"):
        app.periodic("* * * * *", every=timedelta(seconds=1))
    with pytest.raises(ValueError, match="cron field 'hour'"):
        app.periodic("0 24 * * *")
    with pytest.raises(ValueError, match="missed must be one of"):
        app.periodic(every=timedelta(seconds=1), missed="sometimes")(lambda: None)
    entry = app.add_periodic("@daily", app.task(name="nightly")(lambda: None).s(), tz="Europe/Paris")
    assert isinstance(entry.schedule, Cron) and entry.name == "nightly"


def test_virtual_clock_needs_memory(redis_url: str) -> None:
    app = App(Config(broker=redis_url), clock=VirtualClock())
    with pytest.raises(ValueError, match="memory:// only"):
        _ = app.broker


BEAT_TASKS = """
import os
from datetime import timedelta
import redis
from aiocelery import App, Config, current_task

app = App(Config.from_env())
ledger = redis.Redis.from_url(os.environ["AIOCELERY_BROKER"])


@app.periodic(every=timedelta(seconds=1), missed="all")
def second() -> None:
    ctx = current_task()
    assert ctx is not None
    ledger.rpush(os.environ["AIOCELERY_KEY_PREFIX"] + ":ledger", ctx.id)
"""

SKEWED = """
import sys, time
_real = time.time
time.time = lambda: _real() + 37.0   # this scheduler's wall clock is 37 s ahead
from aiocelery.cli import main
sys.exit(main(["beat", "-A", "beat_tasks:app", "-l", "warning"]))
"""


def spawn(commands: list[list[str]], cwd: Path, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.DEVNULL) for c in commands]


@pytest.mark.timeout(150)
async def test_three_schedulers_one_paused_one_skewed_fire_each_second_once(
        tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    (tmp_path / "beat_tasks.py").write_text(textwrap.dedent(BEAT_TASKS))
    env = {**os.environ, "AIOCELERY_BROKER": redis_url, "AIOCELERY_KEY_PREFIX": key_prefix,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    beat = [sys.executable, "-m", "aiocelery", "beat", "-A", "beat_tasks:app", "-l", "warning"]
    worker = [sys.executable, "-m", "aiocelery", "worker", "-A", "beat_tasks:app", "-c", "20",
              "--without-beat", "-l", "warning"]
    procs = spawn([beat, beat, [sys.executable, "-c", SKEWED], worker], tmp_path, env)
    try:
        await asyncio.sleep(20)
        procs[0].send_signal(signal.SIGSTOP)  # paused for 20 s, then it resumes and catches up
        await asyncio.sleep(20)
        procs[0].send_signal(signal.SIGCONT)
        await asyncio.sleep(20)
        for p in procs[:3]:
            p.send_signal(signal.SIGTERM)
        for p in procs[:3]:  # the schedulers have stopped sending
            await asyncio.to_thread(p.wait, 30)
        async with App(Config(broker=redis_url, key_prefix=key_prefix)) as app:
            assert await eventually(lambda: settled(app), timeout=30)  # the worker ran all that was sent
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
    rds = aioredis.Redis.from_url(redis_url)
    try:
        ran = [x.decode() for x in await rds.lrange(f"{key_prefix}:ledger", 0, -1)]
    finally:
        await rds.aclose()
    assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]
    counts = Counter(ran)
    assert counts and max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
    seconds = sorted(int(task_id.split(":")[-1]) for task_id in counts)
    assert len(seconds) >= 55  # ~60 s of 1-second ticks
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), "a fire time was skipped"
    assert time.time() - seconds[-1] < 30  # times are real (Redis TIME), not the skewed clock's
