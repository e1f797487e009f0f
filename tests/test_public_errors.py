"""Public calls raise only documented aiocelery errors, with what to do, and options are checked up front."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from aiocelery import (
    AioCeleryError,
    App,
    BrokerError,
    Config,
    DeadLetterError,
    SendError,
    TaskFailed,
    TimeLimitExceeded,
    chain,
)

from .procs import Procs, run_cli
from .redis_server import free_port


def test_a_misspelt_task_option_is_refused_at_decoration() -> None:
    app = App(Config(broker="memory://"))
    with pytest.raises(TypeError, match=r"unknown task option 'max_retry'; did you mean 'max_retries'\?"):
        app.task(max_retry=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"@app.periodic: unknown task option 'ignore_result'"):
        app.periodic(every=timedelta(seconds=1), ignore_result=True)  # type: ignore[call-arg]
    assert len(app.registry) == 0 and app.periodic_entries == []


async def test_time_limit_exceeded_is_importable_and_retried_when_asked() -> None:
    app = App(Config(broker="memory://"))
    runs: list[int] = []

    @app.task(time_limit_s=0.05, autoretry_for=(TimeLimitExceeded,), max_retries=1, retry_backoff="fixed",
              retry_backoff_s=0.01, retry_jitter=False)
    async def slow() -> None:
        runs.append(1)
        await asyncio.sleep(10)

    async with app, app.worker(concurrency=1):
        result = await slow.delay()
        with pytest.raises(TaskFailed) as info:
            await result.get(timeout=10)
    assert info.value.exc_type == "TimeLimitExceeded"
    assert len(runs) == 2  # the first run, then the one retry it allowed
    assert issubclass(TimeLimitExceeded, AioCeleryError)


def unreachable_app() -> App:
    """An app on a port nothing listens on."""
    return App(Config(broker=f"redis://127.0.0.1:{free_port()}/0", send_timeout_s=2.0))


async def test_revoke_on_an_unreachable_redis_raises_broker_error() -> None:
    async with unreachable_app() as app:
        with pytest.raises(BrokerError, match=r"task abc could not be revoked .* revoke it again") as info:
            await app.revoke("abc")
    assert info.value.task_id == "abc"
    assert isinstance(info.value.__cause__, ConnectionError)


async def test_reading_a_state_or_sending_a_workflow_on_an_unreachable_redis_raises_our_errors() -> None:
    async with unreachable_app() as app:
        @app.task
        async def add(a: int, b: int) -> int:
            return a + b

        for read in (app.AsyncResult("abc").state(), app.AsyncResult("abc").ready()):
            with pytest.raises(BrokerError, match="record of task abc could not be read") as info:
                await read
            assert isinstance(info.value.__cause__, ConnectionError)
        with pytest.raises(SendError, match=r"workflow \(first task .*None of its tasks were queued") as sent:
            await chain(add.s(1, 2), add.s(3)).apply_async(app)
        assert isinstance(sent.value.__cause__, ConnectionError)


async def test_operator_calls_on_an_unreachable_redis_raise_broker_error() -> None:
    async with unreachable_app() as app:
        operations = app.connections.operations
        for call in (operations.requeue_dead("aiocelery", "1-0"), operations.queue_stats("aiocelery"),
                     operations.purge_dead("aiocelery"), operations.dead_letters("aiocelery")):
            with pytest.raises(BrokerError, match="Check that Redis is reachable") as info:
                await call
            assert info.value.__cause__ is not None


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_requeueing_a_missing_dead_letter_says_how_to_list_them(kind: str, redis_url: str,
                                                                      key_prefix: str) -> None:
    broker = "memory://" if kind == "memory" else redis_url
    async with App(Config(broker=broker, key_prefix=key_prefix)) as app:
        with pytest.raises(DeadLetterError, match=r"no dead letter 1-0 in queue 'q'.*dead list"):
            await app.connections.operations.requeue_dead("q", "1-0")


def test_the_cli_prints_an_unreachable_broker_as_one_error_line(tmp_path: Path, redis_url: str,
                                                                 key_prefix: str) -> None:
    with Procs(tmp_path, redis_url, key_prefix) as procs:
        procs.write_module("down_tasks", "")
        env = procs.env(AIOCELERY_BROKER=f"redis://127.0.0.1:{free_port()}/0")
        done = run_cli("queues", "-A", "down_tasks:app", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("error: queue stats failed on Redis"), done.stderr
    assert "Traceback" not in done.stderr
