"""``python -m aiocelery dead list|show|requeue|purge`` against a real Redis."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiocelery import App, Config, TaskDead

from .procs import Procs, run_cli


@pytest.fixture
def procs(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[Procs]:
    with Procs(tmp_path, redis_url, key_prefix) as p:
        yield p


async def dead_letter_one(procs: Procs) -> tuple[App, str]:
    """Send a task nobody registers and let a worker dead-letter it; returns (app, task id)."""
    app = App(Config(broker=procs.redis_url, key_prefix=procs.key_prefix, fetch_block_s=0.2))
    result = await app.send_task("nobody.knows", args=(1, 2))
    async with app.worker(concurrency=1):
        with contextlib.suppress(TaskDead):
            await result.get(timeout=10)
    return app, result.id


async def test_dead_list_show_requeue_purge(tmp_path: Path, procs: Procs) -> None:
    procs.write_module("dead_tasks", "")
    app, task_id = await dead_letter_one(procs)
    env = procs.env()
    try:
        listed = run_cli("dead", "list", "-A", "dead_tasks:app", cwd=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr
        assert task_id in listed.stdout and "nobody.knows" in listed.stdout
        assert "unknown task 'nobody.knows'" in listed.stdout

        shown = run_cli("dead", "show", "-A", "dead_tasks:app", task_id, cwd=tmp_path, env=env)
        assert shown.returncode == 0, shown.stderr
        assert f"id:     {task_id}" in shown.stdout
        assert "error:  NotRegistered" in shown.stdout

        missing = run_cli("dead", "show", "-A", "dead_tasks:app", "no-such-id", cwd=tmp_path, env=env)
        assert missing.returncode == 1 and "no dead letter 'no-such-id'" in missing.stderr

        requeued = run_cli("dead", "requeue", "-A", "dead_tasks:app", task_id, cwd=tmp_path, env=env)
        assert requeued.returncode == 0, requeued.stderr
        assert f"requeued nobody.knows[{task_id}]" in requeued.stdout
        assert await app.AsyncResult(task_id).state() == "PENDING"  # same id, back in the queue
        assert await app.connections.operations.dead_letters(app.config.default_queue) == []

        async with app.worker(concurrency=1):  # still unknown: dead again, never silently dropped
            with contextlib.suppress(TaskDead):
                await app.AsyncResult(task_id).get(timeout=10)
        assert len(await app.connections.operations.dead_letters(app.config.default_queue)) == 1

        refused = run_cli("dead", "purge", "-A", "dead_tasks:app", cwd=tmp_path, env=env)
        assert refused.returncode == 1 and "nothing deleted" in refused.stdout  # no answer: no deletion
        purged = run_cli("dead", "purge", "-A", "dead_tasks:app", "--yes", cwd=tmp_path, env=env)
        assert purged.returncode == 0 and "deleted 1 dead letter(s)" in purged.stdout
        assert await app.connections.operations.dead_letters(app.config.default_queue) == []
    finally:
        await app.close()


def test_dead_help_explains(tmp_path: Path) -> None:
    done = run_cli("dead", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for word in ("list", "show", "requeue", "purge", "max_crashes"):
        assert word in done.stdout
