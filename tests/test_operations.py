"""Operator commands against real worker subprocesses and a real Redis."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiocelery import App
from aiocelery.logs import JsonFormatter, TaskContextFilter, get_task_logger
from aiocelery.testing import VirtualClock  # noqa: F401 - public test helper import stays valid

from .helpers import eventually
from .procs import Procs, run_cli
from .redis_server import free_port

TASKS = """
log_ = __import__("aiocelery").logs.get_task_logger("ops.tasks")


@app.task(name="ops.slow")
async def slow(seconds: float) -> str:
    log_.info("sleeping %s", seconds)
    await asyncio.sleep(seconds)
    return "done"


@app.task(name="ops.quick")
def quick(x: int) -> int:
    return x
"""


@pytest.fixture(params=["redis", "amqp"])
def procs(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[Procs]:
    """Processes on the test's Redis, or on RabbitMQ with that Redis as result backend."""
    broker = request.getfixturevalue("amqp_broker_url") if request.param == "amqp" else None
    with Procs(tmp_path, redis_url, key_prefix, broker=broker) as p:
        p.write_module("ops_tasks", TASKS)
        yield p


def cli(procs: Procs, *args: str) -> tuple[int, str, str]:
    done = run_cli(*args, cwd=procs.tmp_path, env=procs.env())
    return done.returncode, done.stdout, done.stderr


@pytest.mark.timeout(90)
async def test_inspect_queues_status_revoke_purge_control(procs: Procs) -> None:
    health = free_port()
    worker = procs.worker("ops_tasks:app", "-n", "ops-w1", "-c", "4", "--log-format", "json",
                          "--health-port", str(health))
    await worker.wait_banner()
    app = App(procs.config())
    try:
        admin = app.connections.operations
        running = await app.send_task("ops.slow", args=(30,))

        async def started() -> bool:
            return await running.state() == "STARTED"

        async def announced_and_answering() -> bool:  # its heartbeat record is written, its control listener ready
            if not any(w["name"] == "ops-w1" for w in await admin.workers()):
                return False
            return any(r.get("ready") for r in await admin.control("ping", "ops-w1", 0.2))

        assert await eventually(started, timeout=10)
        assert await eventually(announced_and_answering, timeout=10)

        code, out, _ = await asyncio.to_thread(cli, procs, "inspect", "workers", "-A", "ops_tasks:app")
        assert code == 0 and "ops-w1" in out and "concurrency: 4" in out
        code, out, _ = await asyncio.to_thread(cli, procs, "inspect", "ping", "-A", "ops_tasks:app")
        assert code == 0 and "ops-w1" in out and "pong" in out
        code, out, _ = await asyncio.to_thread(cli, procs, "inspect", "registered", "-A", "ops_tasks:app", "--json")
        assert code == 0 and "ops.slow" in json.loads(out)[0]["registered"]

        # heartbeats are every 5 s: wait for one that shows the running task
        async def heartbeat_shows_it() -> bool:
            return any(w["name"] == "ops-w1" and w["active"] for w in await admin.workers())

        assert await eventually(heartbeat_shows_it, timeout=10)
        code, out, _ = await asyncio.to_thread(cli, procs, "inspect", "active", "-A", "ops_tasks:app", "--json")
        assert code == 0 and json.loads(out)[0]["active"][0]["id"] == running.id

        code, out, _ = await asyncio.to_thread(cli, procs, "status", running.id, "-A", "ops_tasks:app")
        assert code == 0 and "state:    STARTED" in out and "ops-w1" in out

        # a queue with waiting and delayed tasks nobody consumes
        waiting = [await app.send_task("ops.quick", args=(i,), queue="idle") for i in range(3)]
        later = await app.send_task("ops.quick", args=(9,), queue="idle", countdown=600)
        code, out, _ = await asyncio.to_thread(cli, procs, "queues", "-A", "ops_tasks:app", "-Q", "idle", "--json")
        stats = json.loads(out)[0]
        assert code == 0 and (stats["waiting"], stats["delayed"]) == (3, 1)
        code, out, _ = await asyncio.to_thread(cli, procs, "purge", "idle", "-A", "ops_tasks:app")
        assert code == 1 and "nothing purged" in out  # no terminal, no answer: nothing happens
        code, out, _ = await asyncio.to_thread(cli, procs, "purge", "idle", "-A", "ops_tasks:app", "--yes")
        assert code == 0 and "purged 4 task(s)" in out
        assert {await r.state() for r in [*waiting, later]} == {"REVOKED"}

        reader, writer = await asyncio.open_connection("127.0.0.1", health)
        writer.write(b"GET /ready HTTP/1.1\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()

        code, out, _ = await asyncio.to_thread(cli, procs, "revoke", running.id, "-A", "ops_tasks:app", "--terminate")
        assert code == 0 and "STARTED" in out
        assert await app.AsyncResult(running.id).state() in ("STARTED", "REVOKED")

        code, out, _ = await asyncio.to_thread(cli, procs, "control", "shutdown", "-A", "ops_tasks:app",
                                               "--worker", "ops-w1")
        assert code == 0 and "shutting down" in out
        assert await worker.wait(30) == 0
    finally:
        await app.close()
    records = [json.loads(line) for line in worker.stderr.splitlines() if line.startswith("{")]
    task_lines = [r for r in records if r.get("message") == "sleeping 30"]
    assert task_lines and task_lines[0]["task_id"] == running.id and task_lines[0]["worker"] == "ops-w1"
    code, out, _ = await asyncio.to_thread(cli, procs, "inspect", "ping", "-A", "ops_tasks:app", "--timeout", "0.5")
    assert code == 1 and "no worker answered" in out  # a liveness probe fails with no worker
    code, out, _ = await asyncio.to_thread(cli, procs, "inspect", "workers", "-A", "ops_tasks:app")
    assert "no live workers" in out  # a stopped worker retires its record


def test_task_logger_adds_context_and_json(caplog: pytest.LogCaptureFixture) -> None:
    from aiocelery.tasks.context import TaskContext, _current

    logger = get_task_logger("unit.tasks")
    token = _current.set(TaskContext("id-1", "unit.task", "q", 2, True, "w9"))
    try:
        with caplog.at_level(logging.INFO, logger="unit.tasks"):
            logger.info("hello %s", "there")
    finally:
        _current.reset(token)
    record = caplog.records[-1]
    assert (record.task_id, record.task_name, record.attempt, record.worker) == ("id-1", "unit.task", 2, "w9")
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello there" and line["task_id"] == "id-1" and line["level"] == "INFO"
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", (), None)
    TaskContextFilter().filter(outside)
    assert "task_id" not in json.loads(JsonFormatter().format(outside))
