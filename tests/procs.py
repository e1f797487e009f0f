"""Real worker subprocesses for tests: write a tasks module, spawn ``python -m aiocelery worker``.

``Procs`` owns every process it starts and kills the leftovers on exit, even when a test fails::

    with Procs(tmp_path, redis_url, key_prefix) as procs:
        procs.write_module("tasks_mod", "@app.task\\nasync def add(a, b):\\n    return a + b\\n")
        worker = procs.worker("tasks_mod:app", "-c", "4")
        await worker.wait_ready(rds)

Each written module starts with ``app = App(Config.from_env())``; ``AIOCELERY_BROKER`` and
``AIOCELERY_KEY_PREFIX`` point it at the test's Redis and its unique prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis

from aiocelery import Config

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (holds ``aiocelery/`` and ``examples/``)."""

GROUP = "aiocelery"

MODULE_HEADER = """\
import asyncio
import os
import threading
import time

from aiocelery import App, Config, current_task

app = App(Config.from_env())
"""


class Proc:
    """One child process whose stdout and stderr are collected line by line by reader threads."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.args = args
        self.popen = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, encoding="utf-8", errors="replace")
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=_drain, args=(self.popen.stdout, self._out), daemon=True),
            threading.Thread(target=_drain, args=(self.popen.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def describe(self) -> str:
        """Everything the process printed, for assertion messages."""
        return (f"$ {' '.join(self.args)}\n(returncode {self.popen.returncode})\n"
                f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}")

    def signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        """The exit code; fails the test (and kills the process) if it does not exit in time."""
        try:
            code = await asyncio.to_thread(self.popen.wait, timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"process did not exit within {timeout} s\n{self.describe()}") from None
        await asyncio.to_thread(self._join_readers)
        return code

    async def wait_output(self, predicate: Callable[[Proc], bool], what: str, timeout: float = 15.0) -> None:
        """Poll until ``predicate(self)`` holds; fail with the output if it doesn't or the process dies."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if self.popen.poll() is not None:
                await asyncio.to_thread(self._join_readers)
                if predicate(self):
                    return
                raise AssertionError(f"process exited before {what}\n{self.describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.describe()}")
            await asyncio.sleep(0.02)

    async def wait_banner(self) -> str:
        """The banner the worker prints at startup (everything up to the blank line after it)."""
        await self.wait_output(lambda p: "  tasks:\n" in p.stdout and "\n\n" in p.stdout, "the banner")
        return self.stdout.split("\n\n", 1)[0] + "\n"

    async def wait_ready(self, rds: aioredis.Redis, queues: list[str], key_prefix: str) -> None:
        """Wait for the banner, the consumer group of every queue, and this process's XREADGROUP.

        The group is created and XREADGROUP issued only after the worker installed its SIGTERM
        handler: from then on a SIGTERM is a graceful stop. (Redis 7.0 lists a consumer in XINFO
        CONSUMERS only once a read delivered it something, so the blocked read is found in
        CLIENT LIST through this process's socket ports instead.)
        """
        await self.wait_banner()
        deadline = time.monotonic() + 15.0
        while True:
            groups_ok = all([await has_group(rds, stream_key(key_prefix, q)) for q in queues])
            if groups_ok and await self._reading(rds):
                return
            if self.popen.poll() is not None:
                await asyncio.to_thread(self._join_readers)
                raise AssertionError(f"worker exited before it started fetching\n{self.describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker never started fetching from {queues}\n{self.describe()}")
            await asyncio.sleep(0.02)

    async def _reading(self, rds: aioredis.Redis) -> bool:
        """True when one of this process's Redis connections last ran XREADGROUP."""
        ports = _local_tcp_ports(self.pid)
        if ports is None:  # no /proc: the group's existence has to do
            return True
        for client in await rds.client_list():
            port = int(str(client.get("addr", ":0")).rsplit(":", 1)[1])
            if port in ports and client.get("cmd") == "xreadgroup":
                return True
        return False

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(10)

    def close(self) -> None:
        """Kill if still running, collect the output, close the pipes."""
        self.kill()
        self._join_readers()
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()


def _drain(pipe: Any, sink: list[str]) -> None:
    for line in iter(pipe.readline, ""):
        sink.append(line)


class Procs:
    """Spawns workers and scripts for one test and kills every leftover on exit."""

    def __init__(self, tmp_path: Path, redis_url: str, key_prefix: str, *, broker: str | None = None) -> None:
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        """The test's Redis: the broker, or with ``broker`` (RabbitMQ) the result backend."""
        self.broker = broker or redis_url
        self.key_prefix = key_prefix
        self.started: list[Proc] = []

    def config(self) -> Config:
        """The Config the spawned processes build from their environment."""
        backend = None if self.broker == self.redis_url else self.redis_url
        return Config(broker=self.broker, result_backend=backend, key_prefix=self.key_prefix)

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for proc in self.started:
            proc.close()

    def env(self, **extra: str) -> dict[str, str]:
        """The parent's environment without AIOCELERY_*, plus the test's broker and prefix."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOCELERY_")}
        pythonpath = [str(self.tmp_path), str(ROOT), env.get("PYTHONPATH", "")]
        env.update(PYTHONPATH=os.pathsep.join(p for p in pythonpath if p), PYTHONIOENCODING="utf-8",
                   PYTHONUNBUFFERED="1", AIOCELERY_BROKER=self.broker, AIOCELERY_KEY_PREFIX=self.key_prefix)
        if self.broker != self.redis_url:
            env["AIOCELERY_RESULT_BACKEND"] = self.redis_url
        env.update(extra)
        return env

    def write_module(self, name: str, body: str, *, header: str = MODULE_HEADER) -> Path:
        """Write ``<tmp_path>/<name>.py``: the header (``app = App(Config.from_env())``) then ``body``."""
        path = self.tmp_path / f"{name}.py"
        path.write_text(header + "\n\n" + textwrap.dedent(body), encoding="utf-8")
        return path

    def spawn(self, args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(args, cwd=cwd or self.tmp_path, env=env or self.env())
        self.started.append(proc)
        return proc

    def worker(self, app_spec: str, *args: str, cwd: Path | None = None, **env: str) -> Proc:
        """``python -m aiocelery worker -A app_spec *args`` with the test's broker and prefix."""
        return self.spawn([sys.executable, "-m", "aiocelery", "worker", "-A", app_spec, *args],
                          cwd=cwd, env=self.env(**env))


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m aiocelery *args`` to completion and capture its output. Without ``env``, the
    parent's environment with this checkout first on PYTHONPATH (as ``Procs.env`` does), so the
    CLI is this checkout's even when the installed package is another's."""
    if env is None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "aiocelery", *args], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8",
                          timeout=timeout, check=False)


# -- Redis inspection --------------------------------------------------------------------------


def stream_key(prefix: str, queue: str) -> str:
    return f"{prefix}:{{{queue}}}:stream"


def dead_key(prefix: str, queue: str) -> str:
    return f"{prefix}:{{{queue}}}:dead"


def task_key(prefix: str, task_id: str) -> str:
    return f"{prefix}:task:{task_id}"


def _local_tcp_ports(pid: int) -> set[int] | None:
    """Local ports of the TCP sockets ``pid`` holds open (Linux /proc), None where unsupported."""
    fd_dir = Path(f"/proc/{pid}/fd")
    if not fd_dir.is_dir():
        return None
    inodes: set[str] = set()
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


async def has_group(rds: aioredis.Redis, stream: str) -> bool:
    """True when ``stream`` exists and has the aiocelery consumer group."""
    if not await rds.exists(stream):
        return False
    return any(_text(g["name"]) == GROUP for g in await rds.xinfo_groups(stream))


async def consumer_names(rds: aioredis.Redis, stream: str) -> list[str]:
    """Consumers of the group on ``stream`` ([] while the stream or group does not exist)."""
    if not await has_group(rds, stream):
        return []
    return [_text(c["name"]) for c in await rds.xinfo_consumers(stream, GROUP)]


async def task_record(rds: aioredis.Redis, prefix: str, task_id: str) -> dict[str, str]:
    """The task hash as text (binary fields such as the payload are replaced by a marker)."""
    raw = await rds.hgetall(task_key(prefix, task_id))
    return {_text(k): _text(v, "<binary>") for k, v in raw.items()}


async def wait_state(rds: aioredis.Redis, prefix: str, task_id: str, state: str, *, timeout: float = 15.0,
                     proc: Proc | None = None) -> dict[str, str]:
    """Poll the task record until its state is ``state``; return the record."""
    deadline = time.monotonic() + timeout
    while True:
        record = await task_record(rds, prefix, task_id)
        if record.get("state") == state:
            return record
        if time.monotonic() > deadline:
            where = f"\n{proc.describe()}" if proc is not None else ""
            raise AssertionError(f"task {task_id} never reached {state}; record {record}{where}")
        await asyncio.sleep(0.02)


def _text(value: Any, undecodable: str = "") -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return undecodable
    return str(value)
