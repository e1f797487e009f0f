"""``python -m aiocelery worker`` as a real subprocess: help, bad -A, banner, tasks, SIGTERM."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aiocelery import App, Config, __version__

from .procs import Proc, Procs, run_cli, stream_key, task_record, wait_state

TASKS = """\
import sys


def running() -> None:
    # tells the test that this run's body began: the record says STARTED a round trip before the
    # worker has the delivery in hand, so a signal sent on STARTED may find it not running yet
    print(f"running {current_task().id}", file=sys.stderr, flush=True)


@app.task(name="cli.add")
async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@app.task(name="cli.where")
def where(text: str) -> dict:
    # a plain def task: it must run in a worker thread, never on the event loop's thread
    return {"upper": text.upper(), "thread": threading.current_thread().name,
            "in_main_thread": threading.current_thread() is threading.main_thread()}


@app.task(name="cli.nap")
async def nap(seconds: float) -> str:
    running()
    await asyncio.sleep(seconds)
    return f"napped {seconds}"


@app.task(name="cli.sync_nap")
def sync_nap(seconds: float) -> str:
    running()
    time.sleep(seconds)
    return f"sync napped {seconds}"


@app.task(name="cli.patient")
async def patient() -> dict:
    # sleeps as long as this worker's TASK_SLEEP_S says, then reports which attempt it was
    running()
    await asyncio.sleep(float(os.environ.get("TASK_SLEEP_S", "0")))
    ctx = current_task()
    return {"attempt": ctx.attempt, "redelivered": ctx.redelivered, "worker": ctx.worker}


@app.task(name="cli.sync_patient")
def sync_patient() -> dict:
    # the plain def twin of `patient`, run in a worker thread
    running()
    time.sleep(float(os.environ.get("TASK_SLEEP_S", "0")))
    ctx = current_task()
    return {"attempt": ctx.attempt, "redelivered": ctx.redelivered, "worker": ctx.worker}
"""


async def wait_running(worker: Proc, task_id: str) -> None:
    """Wait until the worker runs the task's body (see ``running`` in TASKS), so a signal sent
    next finds it in flight."""
    await worker.wait_output(lambda p: f"running {task_id}\n" in p.stderr, f"task {task_id} to start running")


@pytest.fixture
def procs(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[Procs]:
    with Procs(tmp_path, redis_url, key_prefix) as p:
        p.write_module("cli_tasks", TASKS)
        yield p


@pytest.fixture
async def rds(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def client(redis_url: str, key_prefix: str) -> AsyncIterator[App]:
    """The sending side: an app that registers nothing and sends by name."""
    async with App(Config(broker=redis_url, key_prefix=key_prefix)) as app:
        yield app


# -- help and bad arguments (no Redis needed) --------------------------------------------------


def test_top_level_help(tmp_path: Path) -> None:
    done = run_cli("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m aiocelery" in done.stdout
    assert "worker" in done.stdout
    assert "run a worker" in done.stdout


def test_version(tmp_path: Path) -> None:
    done = run_cli("--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"aiocelery {__version__}"


def test_worker_help_explains_the_options(tmp_path: Path) -> None:
    done = run_cli("worker", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for option in ("-A MODULE[:ATTR], --app MODULE[:ATTR]", "-c N, --concurrency N", "-Q Q1,Q2, --queues Q1,Q2",
                   "--grace SECONDS", "-n NAME, --name NAME", "--no-uvloop"):
        assert option in text, f"{option!r} missing from worker --help:\n{text}"
    assert "SIGTERM" in text
    assert "python -m aiocelery worker -A proj.tasks:app" in text  # the examples section survives formatting
    assert "%h = host" in text  # '%%' in the help string renders as one '%'


def test_no_command_and_missing_app_are_usage_errors(tmp_path: Path) -> None:
    done = run_cli(cwd=tmp_path)
    assert done.returncode == 2
    assert "usage:" in done.stderr
    done = run_cli("worker", cwd=tmp_path)
    assert done.returncode == 2
    assert "-A/--app" in done.stderr


def test_bad_app_module_not_importable(tmp_path: Path) -> None:
    done = run_cli("worker", "-A", "no_such_module_xyz:app", cwd=tmp_path)
    assert done.returncode != 0
    assert "no_such_module_xyz" in done.stderr
    assert "-A no_such_module_xyz:app" in done.stderr
    assert "Traceback" not in done.stderr  # a clear message, not a stack trace


def test_bad_app_module_with_a_missing_dependency_names_it(tmp_path: Path, procs: Procs) -> None:
    procs.write_module("broken_dep", "import no_such_dependency_abc  # noqa\n", header="")
    done = run_cli("worker", "-A", "broken_dep:app", cwd=tmp_path, env=procs.env())
    assert done.returncode != 0
    assert "-A broken_dep:app" in done.stderr
    assert "no_such_dependency_abc" in done.stderr  # the real cause, not just "cannot import broken_dep"


def test_bad_app_attribute_is_not_an_app(tmp_path: Path, procs: Procs) -> None:
    procs.write_module("not_an_app", "app = 42\nother = 'x'\n", header="")
    done = run_cli("worker", "-A", "not_an_app:app", cwd=tmp_path, env=procs.env())
    assert done.returncode != 0
    assert "not_an_app:app is not an aiocelery App (found int)" in done.stderr
    assert "Traceback" not in done.stderr

    done = run_cli("worker", "-A", "not_an_app:missing", cwd=tmp_path, env=procs.env())
    assert done.returncode != 0
    assert "not_an_app:missing is not an aiocelery App (found NoneType)" in done.stderr

    done = run_cli("worker", "-A", "not_an_app", cwd=tmp_path, env=procs.env())  # ATTR defaults to 'app'
    assert done.returncode != 0
    assert "not_an_app is not an aiocelery App (found int)" in done.stderr


def test_bad_concurrency_is_a_clear_error(tmp_path: Path, procs: Procs) -> None:
    # checked before connecting to anything; the operator gets one line, not a stack trace
    done = run_cli("worker", "-A", "cli_tasks:app", "-c", "0", cwd=tmp_path, env=procs.env())
    assert done.returncode != 0
    assert "--concurrency: must be at least 1, got 0" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr


# -- banner ------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_banner_redacts_the_password_and_a_signal_stops_an_unconnected_worker(procs: Procs) -> None:
    # Nobody listens on this port: the banner is printed before connecting, then the worker waits
    # for the broker; SIGTERM while it waits must still end it cleanly.
    port = _closed_port()
    # -A without :ATTR uses the module's `app`
    worker = procs.worker("cli_tasks", "-n", "w-redact", "--no-uvloop",
                          AIOCELERY_BROKER=f"redis://alice:s3cr3t-pw@127.0.0.1:{port}/0")
    banner = await worker.wait_banner()
    assert "  app:         cli_tasks\n" in banner
    assert "    . cli.add\n" in banner
    assert f"  broker:      redis://alice:***@127.0.0.1:{port}/0\n" in banner
    assert "  loop:        asyncio\n" in banner
    await worker.wait_output(lambda p: "cannot reach the broker" in p.stderr, "the broker-unreachable warning")
    worker.signal(signal.SIGTERM)
    assert await worker.wait(15) == 0, worker.describe()
    assert "s3cr3t-pw" not in worker.stdout
    assert "s3cr3t-pw" not in worker.stderr


async def test_worker_banner_processes_async_and_def_tasks_and_exits_0_on_sigterm(
        procs: Procs, client: App, rds: aioredis.Redis, redis_url: str, key_prefix: str) -> None:
    worker = procs.worker("cli_tasks:app", "-c", "4", "-Q", "alpha, beta", "-n", "w1@%h", "--grace", "5")
    await worker.wait_ready(rds, ["alpha", "beta"], key_prefix)
    banner = worker.stdout.split("\n\n", 1)[0]
    lines = banner.splitlines()
    hostname = socket.gethostname()
    assert lines[0] == f"aiocelery {__version__} worker w1@{hostname}"
    assert "  app:         cli_tasks:app" in lines
    assert f"  broker:      {redis_url}" in lines
    assert "  queues:      alpha, beta" in lines
    assert any(line.startswith("  concurrency: 4 ") for line in lines), banner
    expected_loop = "uvloop" if _has_uvloop() else "asyncio (uvloop not installed)"
    assert f"  loop:        {expected_loop}" in lines
    tasks = lines[lines.index("  tasks:") + 1:]
    assert sorted(tasks) == sorted(
        f"    . cli.{n}" for n in ("add", "where", "nap", "sync_nap", "patient", "sync_patient"))

    added = await client.send_task("cli.add", args=(2, 3), queue="alpha")
    where = await client.send_task("cli.where", kwargs={"text": "héllo"}, queue="beta")
    assert await added.get(timeout=15) == 5
    value = await where.get(timeout=15)
    assert value["upper"] == "HÉLLO"
    assert value["in_main_thread"] is False, value
    for result in (added, where):
        record = await result.record()
        assert record.state == "SUCCESS"
        assert record.attempt == 1

    worker.signal(signal.SIGTERM)
    assert await worker.wait(15) == 0, worker.describe()
    assert "handed" not in worker.stderr
    assert "stopped: 2 processed, 0 failed" in worker.stderr, worker.describe()
    for queue in ("alpha", "beta"):
        assert await rds.xlen(stream_key(key_prefix, queue)) == 0
        assert (await rds.xpending(stream_key(key_prefix, queue), "aiocelery"))["pending"] == 0


async def test_task_record_names_the_worker_given_by_n(
        procs: Procs, client: App, rds: aioredis.Redis, key_prefix: str) -> None:
    # `-n` is documented as "worker name shown in logs and task records" (cli.py) and Worker.name
    # as "the name stored on the tasks it runs": the record's `worker` field must be that name,
    # both while the task runs (STARTED) and once it is done.
    worker = procs.worker("cli_tasks:app", "-c", "2", "-n", "named-w1", TASK_SLEEP_S="1")
    await worker.wait_ready(rds, ["aiocelery"], key_prefix)
    result = await client.send_task("cli.patient")
    running = await wait_state(rds, key_prefix, result.id, "STARTED", proc=worker)
    value = await result.get(timeout=15)
    assert value["worker"] == "named-w1"  # what the task itself sees (TaskContext.worker)
    done = await result.record()
    worker.signal(signal.SIGTERM)
    assert await worker.wait(15) == 0, worker.describe()
    assert running["worker"] == "named-w1", running
    assert done.worker == "named-w1", done


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return sys.platform != "win32"


# -- SIGTERM with tasks in flight --------------------------------------------------------------


@pytest.mark.parametrize("task_name", ["cli.patient", "cli.sync_patient"])
async def test_sigterm_hands_back_a_task_that_outlives_the_grace(
        procs: Procs, client: App, rds: aioredis.Redis, key_prefix: str, task_name: str) -> None:
    queue = "aiocelery"  # the default queue
    stream = stream_key(key_prefix, queue)
    first = procs.worker("cli_tasks:app", "-c", "2", "--grace", "0.5", "-n", "first", TASK_SLEEP_S="30")
    await first.wait_ready(rds, [queue], key_prefix)
    result = await client.send_task(task_name)
    record = await wait_state(rds, key_prefix, result.id, "STARTED", proc=first)
    assert record["attempt"] == "1"
    await wait_running(first, result.id)

    first.signal(signal.SIGTERM)
    # the task would sleep 30 s more: a worker that waits for it (e.g. joins an abandoned
    # thread at exit) fails this 10 s bound
    assert await first.wait(10) == 0, first.describe()
    assert "handed 1 unfinished task(s) back to the queue" in first.stderr, first.describe()

    record = await task_record(rds, key_prefix, result.id)
    assert record["state"] == "PENDING", record
    assert record["crashes"] == "0", record  # a hand-back is not a crash
    assert "result" not in record
    entries = await rds.xrange(stream)
    assert [fields[b"id"].decode() for _, fields in entries] == [result.id]
    assert (await rds.xpending(stream, "aiocelery"))["pending"] == 0  # re-queued, owned by nobody

    second = procs.worker("cli_tasks:app", "-c", "2", "-n", "second", TASK_SLEEP_S="0")
    value = await result.get(timeout=15)
    assert value == {"attempt": 2, "redelivered": True, "worker": "second"}
    record = await task_record(rds, key_prefix, result.id)
    assert record["state"] == "SUCCESS"
    assert record["crashes"] == "0"
    assert record["payload"] == "", record  # emptied once it succeeded: nothing reads it again

    second.signal(signal.SIGTERM)
    assert await second.wait(15) == 0, second.describe()
    assert await rds.xlen(stream) == 0
    assert (await rds.xpending(stream, "aiocelery"))["pending"] == 0


async def test_second_sigterm_hands_back_at_once(
        procs: Procs, client: App, rds: aioredis.Redis, key_prefix: str) -> None:
    stream = stream_key(key_prefix, "aiocelery")
    worker = procs.worker("cli_tasks:app", "-c", "2", "--grace", "120", TASK_SLEEP_S="120")
    await worker.wait_ready(rds, ["aiocelery"], key_prefix)
    result = await client.send_task("cli.patient")
    await wait_running(worker, result.id)

    worker.signal(signal.SIGTERM)
    await worker.wait_output(lambda p: "SIGTERM: stopping; 1 task(s) in flight" in p.stderr, "the first SIGTERM")
    assert worker.popen.poll() is None  # still granting the 120 s grace
    worker.signal(signal.SIGTERM)
    # without the second signal it would wait 120 s: the 15 s bound fails the test then
    assert await worker.wait(15) == 0, worker.describe()
    assert "SIGTERM again: cancelling 1 running task(s)" in worker.stderr
    record = await task_record(rds, key_prefix, result.id)
    assert record["state"] == "PENDING", record
    assert record["crashes"] == "0", record
    assert [f[b"id"].decode() for _, f in await rds.xrange(stream)] == [result.id]
    assert (await rds.xpending(stream, "aiocelery"))["pending"] == 0


async def test_sigterm_lets_short_tasks_finish_within_the_grace(
        procs: Procs, client: App, rds: aioredis.Redis, key_prefix: str) -> None:
    stream = stream_key(key_prefix, "aiocelery")
    worker = procs.worker("cli_tasks:app", "-c", "4", "--grace", "20")
    await worker.wait_ready(rds, ["aiocelery"], key_prefix)
    nap = await client.send_task("cli.nap", args=(1.0,))
    sync_nap = await client.send_task("cli.sync_nap", args=(1.0,))
    await wait_running(worker, nap.id)
    await wait_running(worker, sync_nap.id)

    worker.signal(signal.SIGTERM)
    assert await worker.wait(20) == 0, worker.describe()
    assert "handed" not in worker.stderr, worker.describe()
    assert "stopped: 2 processed, 0 failed" in worker.stderr, worker.describe()
    # both finished before the process exited: the records are final without any other worker
    assert (await task_record(rds, key_prefix, nap.id))["state"] == "SUCCESS"
    assert (await task_record(rds, key_prefix, sync_nap.id))["state"] == "SUCCESS"
    assert await nap.get(timeout=1) == "napped 1.0"
    assert await sync_nap.get(timeout=1) == "sync napped 1.0"
    assert await rds.xlen(stream) == 0
    assert (await rds.xpending(stream, "aiocelery"))["pending"] == 0


async def test_sigterm_after_stop_fetching_leaves_new_tasks_queued(
        procs: Procs, client: App, rds: aioredis.Redis, key_prefix: str) -> None:
    # During the grace period the worker no longer fetches: a task sent then waits for the next worker.
    stream = stream_key(key_prefix, "aiocelery")
    worker = procs.worker("cli_tasks:app", "-c", "4", "--grace", "20")
    await worker.wait_ready(rds, ["aiocelery"], key_prefix)
    nap = await client.send_task("cli.nap", args=(1.5,))
    await wait_running(worker, nap.id)
    worker.signal(signal.SIGTERM)
    await worker.wait_output(lambda p: "SIGTERM: stopping" in p.stderr, "the SIGTERM log line")
    late = await client.send_task("cli.add", args=(1, 1))
    assert await worker.wait(20) == 0, worker.describe()
    assert (await task_record(rds, key_prefix, nap.id))["state"] == "SUCCESS"
    late_record = await task_record(rds, key_prefix, late.id)
    assert late_record["state"] == "PENDING", late_record
    assert late_record.get("attempt", "0") == "0", late_record  # never started (absent reads as 0)
    assert [f[b"id"].decode() for _, f in await rds.xrange(stream)] == [late.id]


@pytest.mark.parametrize("loop_flag", [[], ["--no-uvloop"]], ids=["default-loop", "asyncio-loop"])
async def test_sigint_is_a_graceful_stop_too(
        procs: Procs, client: App, rds: aioredis.Redis, key_prefix: str, loop_flag: list[str]) -> None:
    worker = procs.worker("cli_tasks:app", "-c", "2", "--grace", "20", *loop_flag)
    await worker.wait_ready(rds, ["aiocelery"], key_prefix)
    nap = await client.send_task("cli.nap", args=(0.5,))
    await wait_running(worker, nap.id)
    worker.signal(signal.SIGINT)
    assert await worker.wait(20) == 0, worker.describe()
    assert "SIGINT: stopping; 1 task(s) in flight" in worker.stderr, worker.describe()
    assert "KeyboardInterrupt" not in worker.stderr
    assert await nap.get(timeout=1) == "napped 0.5"
