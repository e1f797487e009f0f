"""GoCelery's example end to end: ``examples/demo.py``, and GoCelery's client against a CLI worker."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from .procs import ROOT, Procs, stream_key


@pytest.fixture
def procs(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[Procs]:
    with Procs(tmp_path, redis_url, key_prefix) as p:
        yield p


@pytest.fixture
async def rds(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def test_demo_runs_the_seed_example_on_the_given_redis(procs: Procs) -> None:
    # AIOCELERY_BROKER set: the demo uses it instead of starting its own redis-server; it picks
    # its own key prefix. Its worker and client inherit our pipes, so all their output is here.
    env = procs.env()
    del env["AIOCELERY_KEY_PREFIX"]
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py")], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8",
                          timeout=45, check=False)
    out = done.stdout
    assert done.returncode == 0, f"stdout:\n{out}\nstderr:\n{done.stderr}"
    assert "resp: 你好国学大师" in out
    assert "Add(2, 3): 5" in out
    assert "demo: worker exited with code 0" in out
    assert "throwaway redis-server" not in out  # it used the broker we gave it
    assert "memory://" not in out
    assert f"  broker:      {procs.redis_url}" in out  # the worker's banner
    assert "    . HelloWorld" in out
    assert "    . Add" in out


async def test_seed_client_against_a_cli_worker(procs: Procs, rds: aioredis.Redis, key_prefix: str) -> None:
    queue = "machinery_tasks"  # Machinery's DefaultQueue
    worker = procs.worker("examples.seed_example:app", "-n", "worker@localhost", "-c", "10", cwd=ROOT)
    await worker.wait_ready(rds, [queue], key_prefix)
    banner = worker.stdout
    assert "  queues:      machinery_tasks" in banner
    assert "    . Add\n" in banner
    assert "    . HelloWorld\n" in banner

    client = procs.spawn([sys.executable, str(ROOT / "examples" / "seed_example.py"), "client"], cwd=ROOT)
    assert await client.wait(30) == 0, client.describe()
    assert client.stdout.splitlines() == ["resp: 你好国学大师", "Add(2, 3): 5"], client.describe()

    worker.signal(signal.SIGTERM)
    assert await worker.wait(15) == 0, worker.describe()
    assert "stopped: 2 processed, 0 failed" in worker.stderr, worker.describe()
    stream = stream_key(key_prefix, queue)
    assert await rds.xlen(stream) == 0
    assert (await rds.xpending(stream, "aiocelery"))["pending"] == 0
    # both tasks' records live under our prefix and ended SUCCESS
    states = [await rds.hget(key, "state") async for key in rds.scan_iter(f"{key_prefix}:task:*")]
    assert states == [b"SUCCESS", b"SUCCESS"]


def test_seed_example_usage_error(procs: Procs) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "seed_example.py")], cwd=ROOT, env=procs.env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8",
                          timeout=30, check=False)
    assert done.returncode != 0
    assert "usage: python examples/seed_example.py worker|client" in done.stderr
