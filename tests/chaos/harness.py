"""Chaos harness: a broker Redis per test, a ledger Redis nobody faults, worker subprocesses, checks.

A scenario can also run on RabbitMQ (``Chaos(amqp_vhost=...)``, the ``chaos_amqp`` fixture): workers
and clients then use ``amqp://`` on a vhost of the test's own as broker and the scenario's Redis as
result backend (task records, results, delayed set, dead letters: the same keys as on Redis), and
"drained" means the RabbitMQ queue holds no message (ready or unacknowledged) and nothing is delayed.

Every task of ``TASKS`` appends one JSON line per execution to ``<ns>:runs:<task id>`` on the
ledger (worker, attempt, redelivered, pid, time), so a test can count executions per task no
matter what happened to the broker. ``Chaos.verify()`` then checks the contract for a set of ids:
each reached its expected terminal state with the right result, ran no more often than the
scenario allows (attempts of one task are always distinct: the fencing token), published its
terminal state at most once, and the queue is drained (stream empty, nothing pending, no delayed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.sentinel import Sentinel

from aiocelery import App, AsyncResult, Config

from .. import rabbitmq
from ..procs import Proc, Procs, dead_key, stream_key, task_key
from ..redis_server import RedisServer
from ..topologies import SentinelTopology

QUEUE = "aiocelery"
GROUP = "aiocelery"
TASKS_MODULE = "chaos_tasks"

TASKS = """\
import json
import signal

import redis as _redis

_ledger = _redis.Redis.from_url(os.environ["LEDGER_URL"])
_NS = os.environ["LEDGER_NS"]


def _record(note=""):
    ctx = current_task()
    entry = {"worker": ctx.worker, "attempt": ctx.attempt, "redelivered": ctx.redelivered,
             "pid": os.getpid(), "t": time.time(), "note": note}
    _ledger.rpush(f"{_NS}:runs:{ctx.id}", json.dumps(entry))


def _flag(name):
    return bool(_ledger.exists(f"{_NS}:flag:{name}"))


@app.task(name="chaos.echo")
async def echo(x):
    _record()
    return x


@app.task(name="chaos.sleep")
async def sleep(x, seconds):
    _record()
    await asyncio.sleep(seconds)
    return x


@app.task(name="chaos.sync_sleep")
def sync_sleep(x, seconds):
    _record()
    time.sleep(seconds)
    return x


@app.task(name="chaos.whoami")
async def whoami(seconds):
    _record()
    ctx = current_task()
    await asyncio.sleep(seconds)
    return f"{ctx.worker}:{ctx.attempt}"


@app.task(name="chaos.slow_first")
async def slow_first(x, seconds):
    # the side effect (the ledger line) first; then, on the first attempt only, linger to be killed
    _record()
    if current_task().attempt == 1:
        await asyncio.sleep(seconds)
    return x


@app.task(name="chaos.sync_slow_first")
def sync_slow_first(x, seconds):
    _record()
    if current_task().attempt == 1:
        time.sleep(seconds)
    return x


@app.task(name="chaos.wait_flag")
async def wait_flag(x, flag, after, limit):
    # runs until the test raises the flag on the ledger (bounded by limit), then `after` more seconds
    _record()
    deadline = time.monotonic() + limit
    while not _flag(flag) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(after)
    return x


@app.task(name="chaos.suicide")
async def suicide():
    _record()
    os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.sleep(60)


@app.task(name="chaos.block_loop")
async def block_loop(x, seconds):
    _record()
    time.sleep(seconds)  # deliberately blocks the event loop
    return x


@app.task(name="chaos.forever")
def forever():
    _record()
    time.sleep(3600)


@app.task(name="chaos.forever_limited", time_limit_s=1.5)
def forever_limited():
    _record()
    time.sleep(3600)
"""

FAST_ENV = {
    "AIOCELERY_LEASE_S": "2",
    "AIOCELERY_RECLAIM_INTERVAL_S": "0.5",
    "AIOCELERY_FETCH_BLOCK_S": "1",
}
"""Worker settings for chaos tests: a 2 s lease, reclaim every 0.5 s."""


@dataclass(frozen=True)
class Run:
    """One execution of a task, as the task itself wrote it to the ledger."""

    worker: str
    attempt: int
    redelivered: bool
    pid: int
    t: float
    note: str = ""


@dataclass
class Stats:
    """What ``verify`` measured, for the report."""

    tasks: int = 0
    runs: int = 0
    duplicates: int = 0
    """Tasks that ran more than once."""
    lost: int = 0
    """Tasks that did not reach their expected terminal state."""
    max_runs: int = 0
    crashes: int = 0
    """Sum of the records' crash counters."""
    publishes: int = 0

    def line(self) -> str:
        return (f"tasks={self.tasks} runs={self.runs} duplicates={self.duplicates} lost={self.lost} "
                f"max_runs={self.max_runs} crashes={self.crashes} publishes={self.publishes}")


class DoneCounter:
    """Counts terminal-state publications per task id (PSUBSCRIBE ``<prefix>:done:*``), reconnecting
    (through ``connect``, when given, instead of to ``url``: e.g. to the master a sentinel names)."""

    def __init__(self, url: str, prefix: str, connect: Callable[[], aioredis.Redis] | None = None) -> None:
        self._url = url
        self._connect_client = connect or (lambda: aioredis.Redis.from_url(self._url, socket_connect_timeout=1.0))
        self._pattern = f"{prefix}:done:*"
        self._cut = len(f"{prefix}:done:")
        self.counts: Counter[str] = Counter()
        self.gaps = 0
        """Reconnects: while disconnected, publications can be missed."""
        self._task: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._markers = 0

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _connect(self) -> PubSub:
        if self._client is not None:
            await self._client.aclose()
        self._client = self._connect_client()
        pubsub = self._client.pubsub()
        await pubsub.psubscribe(self._pattern)
        for _ in range(10):  # wait for the confirmation, so nothing published after start() is missed
            msg = await pubsub.get_message(timeout=5.0)
            if msg is not None and msg["type"] == "psubscribe":
                self._pubsub = pubsub
                return pubsub
        await pubsub.aclose()
        raise RuntimeError("no psubscribe confirmation")

    async def _run(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        for _ in range(1000):  # bounded reconnects; cancelled by stop()
            try:
                for _ in range(10_000_000):
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg["type"] == "pmessage":
                        self.counts[msg["channel"].decode()[self._cut:]] += 1
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError, RuntimeError):
                self.gaps += 1
                await pubsub.aclose()
                await asyncio.sleep(0.2)
                with contextlib.suppress(aioredis.ConnectionError, aioredis.TimeoutError, OSError, RuntimeError):
                    pubsub = await self._connect()

    async def caught_up(self, rds: aioredis.Redis, timeout: float = 10.0) -> None:
        """Return once every publication Redis made before this call has been counted.

        It publishes a marker on a channel the pattern matches and waits for it to come back: one
        Redis and one subscriber connection, so messages arrive in the order Redis published them,
        and those published before the marker are counted before it. (A reconnect can lose the
        marker, as it can lose anything published while disconnected: another one is sent then.)
        """
        self._markers += 1
        key = f"caught-up-marker-{self._markers}"
        channel = self._pattern[:-1] + key
        deadline = time.monotonic() + timeout
        while True:
            await rds.publish(channel, "marker")
            for _ in range(50):
                if self.counts.pop(key, 0):
                    return
                await asyncio.sleep(0.02)
            if time.monotonic() > deadline:
                raise AssertionError(f"the done counter did not see its marker within {timeout} s "
                                     f"({self.gaps} reconnect(s))")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._client is not None:
            await self._client.aclose()


class Supervisor:
    """Restarts worker processes that exited (e.g. killed by a poison task), a bounded number of times."""

    def __init__(self, chaos: Chaos, workers: list[Proc], *, max_restarts: int, **worker_kwargs: Any) -> None:
        self._chaos = chaos
        self.workers = workers
        self._max = max_restarts
        self._kwargs = worker_kwargs
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        for _ in range(20 * 600):  # at most 10 minutes; cancelled by stop()
            if self.restarts >= self._max:
                return
            for i, proc in enumerate(self.workers):
                if proc.popen.poll() is not None and self.restarts < self._max:
                    self.restarts += 1
                    self.workers[i] = self._chaos.worker(f"sup{self.restarts}", **self._kwargs)
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


TEARDOWN_STEP_S = 15.0


async def _bounded(what: str, step: Awaitable[None]) -> None:
    """Run a teardown step; one that hangs fails the test naming itself, with every task's stack
    on stderr, instead of running into the test's overall timeout unexplained."""
    try:
        async with asyncio.timeout(TEARDOWN_STEP_S):
            await step
    except TimeoutError:
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        raise AssertionError(f"chaos teardown: {what} did not finish within {TEARDOWN_STEP_S} s "
                             "(the stacks of every task are on stderr)") from None


async def _ignoring_errors(step: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):
        await step


@dataclass
class Chaos:
    """One scenario's world: broker Redis (restartable), ledger, workers, clients and checks."""

    tmp_path: Path
    broker: RedisServer
    """The scenario's Redis: the broker, or with ``amqp_vhost`` the result backend."""
    ledger_url: str
    amqp_vhost: str | None = None
    """A RabbitMQ vhost of this scenario's own: the broker is then RabbitMQ, ``broker`` its result backend."""
    sentinel: SentinelTopology | None = None
    """A Sentinel topology as the broker (``broker`` is its first master): workers and clients get its
    ``redis+sentinel://`` URL, ``rds`` and the done counter follow the master the sentinels name."""
    prefix: str = field(default_factory=lambda: f"c{uuid.uuid4().hex[:10]}")
    ns: str = field(default_factory=lambda: f"ledger{uuid.uuid4().hex[:10]}")
    procs: Procs = field(init=False)
    rds: aioredis.Redis = field(init=False)
    """Direct connection to the broker (never through a proxy)."""
    ledger: aioredis.Redis = field(init=False)
    done: DoneCounter = field(init=False)
    _apps: list[App] = field(default_factory=list)
    _names: Counter[str] = field(default_factory=Counter)
    _quiet: set[int] = field(default_factory=set)
    _sentinels: Sentinel | None = None

    async def open(self) -> Chaos:
        self.procs = Procs(self.tmp_path, self.redis_url, self.prefix)
        self.procs.write_module(TASKS_MODULE, TASKS)
        self.rds = self._direct()
        self.ledger = aioredis.Redis.from_url(self.ledger_url)
        self.done = DoneCounter(self.broker.url, self.prefix, connect=self._direct if self.sentinel else None)
        await self.done.start()
        return self

    async def close(self) -> None:
        try:
            for app in self._apps:
                await _bounded(f"App.close() of {app!r}", _ignoring_errors(app.close()))
            await _bounded("the done counter's stop()", self.done.stop())
        finally:
            self.procs.__exit__(None, None, None)
            await self.rds.aclose()
            await self.ledger.aclose()
            for sentinel in self._sentinels.sentinels if self._sentinels is not None else []:
                await sentinel.aclose()

    async def reconnect(self) -> None:
        """New direct client after a broker restart or a failover (the old pool's sockets are dead)."""
        await self.rds.aclose()
        self.rds = self._direct()

    def _direct(self) -> aioredis.Redis:
        """A redis-py client of the scenario's Redis; with ``sentinel``, of the master the sentinels
        name when it connects."""
        if self.sentinel is None:
            return aioredis.Redis.from_url(self.broker.url, socket_connect_timeout=2.0)
        if self._sentinels is None:
            self._sentinels = Sentinel(self.sentinel.sentinel_addresses, socket_timeout=2.0,
                                       socket_connect_timeout=2.0)
        master: aioredis.Redis = self._sentinels.master_for(self.sentinel.master_name, socket_timeout=5.0,
                                                            socket_connect_timeout=2.0)
        return master

    # -- where the broker is ------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        """The scenario's Redis as workers and clients name it (``redis+sentinel://`` with ``sentinel``)."""
        return self.broker.url if self.sentinel is None else self.sentinel.url()

    @property
    def is_amqp(self) -> bool:
        return self.amqp_vhost is not None

    @property
    def broker_url(self) -> str:
        """What workers and clients get as ``broker``: the Redis, or ``amqp://`` on the scenario's vhost."""
        return self.redis_url if self.amqp_vhost is None else rabbitmq.amqp_url(self.amqp_vhost)

    def broker_env(self, broker_url: str | None = None) -> dict[str, str]:
        """``AIOCELERY_*`` variables naming the broker (and with RabbitMQ the Redis result backend);
        ``broker_url`` stands for the scenario's Redis (e.g. a proxy in front of it)."""
        redis_url = broker_url or self.redis_url
        if self.amqp_vhost is None:
            return {"AIOCELERY_BROKER": redis_url}
        return {"AIOCELERY_BROKER": self.broker_url, "AIOCELERY_RESULT_BACKEND": redis_url}

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a CLI subprocess (``procs.run_cli``) on this scenario's broker and prefix,
        which can load the tasks module (``-A chaos_tasks:app``)."""
        return self.procs.env(**self.broker_env(), LEDGER_URL=self.ledger_url, LEDGER_NS=self.ns, **extra)

    # -- keys --------------------------------------------------------------------------------

    @property
    def stream(self) -> str:
        return stream_key(self.prefix, QUEUE)

    @property
    def dead(self) -> str:
        return dead_key(self.prefix, QUEUE)

    @property
    def delayed(self) -> str:
        return f"{self.prefix}:{{{QUEUE}}}:delayed"

    def task_key(self, task_id: str) -> str:
        return task_key(self.prefix, task_id)

    # -- workers -----------------------------------------------------------------------------

    def worker(self, name: str | None = None, *, concurrency: int = 8, grace: float | None = None,
               broker_url: str | None = None, loglevel: str = "info", args: Sequence[str] = (),
               **env: str) -> Proc:
        """Spawn ``python -m aiocelery worker`` on the tasks module with chaos settings (FAST_ENV)."""
        if name is None:
            self._names["w"] += 1
            name = f"w{self._names['w']}"
        cli = ["-c", str(concurrency), "-n", name, "-l", loglevel, *args]
        if grace is not None:
            cli += ["--grace", str(grace)]
        extra = {**FAST_ENV, "LEDGER_URL": self.ledger_url, "LEDGER_NS": self.ns, **env}
        if broker_url is not None or self.is_amqp:
            extra.update(self.broker_env(broker_url))
        proc = self.procs.worker(f"{TASKS_MODULE}:app", *cli, **extra)
        if loglevel not in ("info", "debug"):
            assert not self.is_amqp, "a RabbitMQ worker is found ready by its log: run it at info level"
            self._quiet.add(proc.pid)
        return proc

    async def ready(self, *workers: Proc, timeout: float = 20.0) -> None:
        """Wait until each worker consumes: it logged so at info level; a quieter (direct) worker is
        found blocked in XREADGROUP through CLIENT LIST. Signal handlers are installed by then."""
        async def one(w: Proc) -> None:
            if w.pid in self._quiet:
                await w.wait_ready(self.rds, [QUEUE], self.prefix)
            else:
                await w.wait_output(lambda p: "ready: consuming" in p.stderr, "worker ready", timeout)
        await asyncio.gather(*(one(w) for w in workers))

    async def workers(self, n: int, **kwargs: Any) -> list[Proc]:
        """Start ``n`` workers and wait until all are ready."""
        procs = [self.worker(**kwargs) for _ in range(n)]
        await self.ready(*procs)
        return procs

    @staticmethod
    async def kill(proc: Proc) -> float:
        """SIGKILL ``proc``; returns the wall-clock time of the kill."""
        t = time.time()
        proc.signal(signal.SIGKILL)
        assert await proc.wait(10) == -signal.SIGKILL
        return t

    # -- clients -----------------------------------------------------------------------------

    def app(self, broker_url: str | None = None, **config: Any) -> App:
        """A client App on the broker (or on ``broker_url``, e.g. a proxy, standing for the scenario's
        Redis: with RabbitMQ the result backend); closed at teardown."""
        if self.is_amqp:
            config = {"broker": self.broker_url, "result_backend": broker_url or self.redis_url, **config}
        else:
            config = {"broker": broker_url or self.redis_url, **config}
        app = App(Config(key_prefix=self.prefix, **config))
        self._apps.append(app)
        return app

    @staticmethod
    async def send_many(app: App, name: str, args_list: Iterable[Sequence[Any]], *, chunk: int = 500,
                        **options: Any) -> list[AsyncResult[Any]]:
        """Send one task per args tuple, ``chunk`` concurrently at a time."""
        all_args = list(args_list)
        out: list[AsyncResult[Any]] = []
        for start in range(0, len(all_args), chunk):
            out += await asyncio.gather(*(app.send_task(name, list(a), **options)
                                          for a in all_args[start:start + chunk]))
        return out

    @staticmethod
    async def results(results: Sequence[AsyncResult[Any]], timeout: float, *, chunk: int = 1000,
                      watch: Sequence[Proc] = ()) -> list[Any]:
        """``get()`` every result (``chunk`` waiters at a time); fails at once, with its output, if a
        ``watch``ed worker process exits meanwhile."""
        async def gather_all() -> list[Any]:
            values: list[Any] = []
            deadline = time.monotonic() + timeout
            for start in range(0, len(results), chunk):
                left = max(0.1, deadline - time.monotonic())
                values += await asyncio.gather(*(r.get(timeout=left) for r in results[start:start + chunk]))
            return values

        async def first_death() -> None:
            for _ in range(int(timeout / 0.05) + 100):  # bounded; the getter times out first
                if any(w.popen.poll() is not None for w in watch):
                    return
                await asyncio.sleep(0.05)

        getting = asyncio.ensure_future(gather_all())
        if not watch:
            return await getting
        dying = asyncio.ensure_future(first_death())
        try:
            await asyncio.wait([getting, dying], return_when=asyncio.FIRST_COMPLETED)
        finally:
            dying.cancel()
        if not getting.done():
            getting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getting
            dead = [w for w in watch if w.popen.poll() is not None]
            raise AssertionError("a worker died while results were awaited\n" + "\n".join(w.describe() for w in dead))
        return getting.result()

    async def wait_states(self, ids: Sequence[str], states: set[str], timeout: float) -> dict[str, str]:
        """Poll the records until every id is in one of ``states``; returns id -> state."""
        deadline = time.monotonic() + timeout
        while True:
            current = await self.states(ids)
            if all(s in states for s in current.values()):
                return current
            if time.monotonic() > deadline:
                stuck = {i: s for i, s in current.items() if s not in states}
                raise AssertionError(f"{len(stuck)} task(s) not in {states} after {timeout} s: "
                                     f"{dict(list(stuck.items())[:10])}")
            await asyncio.sleep(0.05)

    async def states(self, ids: Sequence[str]) -> dict[str, str]:
        rows = await self.fields(ids, "state")
        return {i: (r[0] or b"").decode() for i, r in zip(ids, rows, strict=True)}

    async def fields(self, ids: Sequence[str], *names: str) -> list[list[bytes | None]]:
        async with self.rds.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hmget(self.task_key(i), list(names))
            return list(await pipe.execute())

    async def record(self, task_id: str) -> dict[str, str]:
        raw = await self.rds.hgetall(self.task_key(task_id))
        return {k.decode(): v.decode(errors="replace") for k, v in raw.items()}

    # -- ledger ------------------------------------------------------------------------------

    async def runs(self, task_id: str) -> list[Run]:
        return [Run(**json.loads(x)) for x in await self.ledger.lrange(f"{self.ns}:runs:{task_id}", 0, -1)]

    async def all_runs(self, ids: Sequence[str]) -> dict[str, list[Run]]:
        async with self.ledger.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.lrange(f"{self.ns}:runs:{i}", 0, -1)
            rows = await pipe.execute()
        return {i: [Run(**json.loads(x)) for x in row] for i, row in zip(ids, rows, strict=True)}

    async def wait_runs(self, task_id: str, n: int, timeout: float) -> list[Run]:
        """Wait until ``task_id`` has at least ``n`` runs in the ledger."""
        deadline = time.monotonic() + timeout
        while True:
            runs = await self.runs(task_id)
            if len(runs) >= n:
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} ran {len(runs)} time(s), expected {n} within {timeout} s: "
                                     f"{runs}; record {await self.record(task_id)}")
            await asyncio.sleep(0.02)

    async def wait_total_runs(self, ids: Sequence[str], n: int, timeout: float) -> None:
        """Wait until the ids have ``n`` runs between them."""
        deadline = time.monotonic() + timeout
        while True:
            total = sum(len(r) for r in (await self.all_runs(ids)).values())
            if total >= n:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"only {total} of {n} runs started within {timeout} s")
            await asyncio.sleep(0.02)

    async def raise_flag(self, name: str) -> None:
        await self.ledger.set(f"{self.ns}:flag:{name}", 1)

    # -- Redis facts -------------------------------------------------------------------------

    async def entries_added(self) -> int:
        """How many entries were ever XADDed to the queue's stream (XINFO STREAM entries-added)."""
        info = await self.rds.xinfo_stream(self.stream)
        return int(info["entries-added"])

    async def pending(self) -> int:
        return int((await self.rds.xpending(self.stream, GROUP))["pending"])

    async def dead_letters(self) -> list[dict[str, str]]:
        return [{k.decode(): v.decode(errors="replace") for k, v in fields.items()}
                for _, fields in await self.rds.xrange(self.dead)]

    async def amqp_depth(self) -> int:
        """Messages in the RabbitMQ queue, ready and unacknowledged (0 before it is declared)."""
        assert self.amqp_vhost is not None
        return await asyncio.to_thread(rabbitmq.queue_depth, self.amqp_vhost, QUEUE) or 0

    async def assert_drained(self, timeout: float = 10.0) -> None:
        """Stream empty, nothing pending in the group, nothing delayed (waits a little for settles).
        On RabbitMQ: the queue holds no message, ready or unacknowledged, and nothing is delayed."""
        deadline = time.monotonic() + timeout
        if self.is_amqp:
            while True:
                depth, delayed = await self.amqp_depth(), await self.rds.zcard(self.delayed)
                if depth == delayed == 0:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"queue not drained: {depth} message(s) in RabbitMQ, delayed {delayed}: "
                                         f"{await self.rds.zrange(self.delayed, 0, 9, withscores=True)}")
                await asyncio.sleep(0.2)
        while True:
            xlen, pending, delayed = (await self.rds.xlen(self.stream), await self.pending(),
                                      await self.rds.zcard(self.delayed))
            if xlen == pending == delayed == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"queue not drained: XLEN {xlen}, pending {pending}, delayed {delayed}; "
                                     f"{await self.rds.xrange(self.stream, count=10)}")
            await asyncio.sleep(0.05)

    # -- the contract ------------------------------------------------------------------------

    async def verify(self, ids: Sequence[str], *, state: str = "SUCCESS", values: dict[str, Any] | None = None,
                     min_runs: int = 1, max_runs: int = 1, drained: bool = True, fencing: bool = True,
                     max_publishes: int = 1) -> Stats:
        """Check every id: terminal ``state``, its value, ``min_runs..max_runs`` executions with distinct
        attempts, at most one terminal publication (exactly one when the counter saw everything).

        A failover loses what the old master had not replicated, task records included: a task that
        ran there can run again with the same attempt (``fencing=False``) and publish its terminal
        state again (``max_publishes``)."""
        if drained:
            await self.assert_drained()
        await self.done.caught_up(self.rds)  # every terminal publication made so far is counted
        stats = Stats(tasks=len(ids))
        rows = await self.fields(ids, "state", "result", "crashes", "attempt")
        runs = await self.all_runs(ids)
        problems: list[str] = []
        for task_id, (st, result, crashes, attempt) in zip(ids, rows, strict=True):
            got = (st or b"").decode()
            stats.crashes += int(crashes or 0)
            if got != state:
                stats.lost += 1
                problems.append(f"{task_id}: state {got or 'MISSING'}, expected {state}")
                continue
            if values is not None and task_id in values:
                value = json.loads(result) if result else None
                if value != values[task_id]:
                    problems.append(f"{task_id}: result {value!r}, expected {values[task_id]!r}")
            r = runs[task_id]
            stats.runs += len(r)
            stats.max_runs = max(stats.max_runs, len(r))
            stats.duplicates += len(r) > 1
            if not min_runs <= len(r) <= max_runs:
                problems.append(f"{task_id}: ran {len(r)} time(s), allowed {min_runs}..{max_runs}: {r}")
            attempts = [x.attempt for x in r]
            if fencing and len(set(attempts)) != len(attempts):
                problems.append(f"{task_id}: two executions of the same attempt (fencing broken): {r}")
            if fencing and r and attempt is not None and int(attempt) < max(attempts):
                problems.append(f"{task_id}: record attempt {int(attempt)} < ran attempt {max(attempts)}")
            published = self.done.counts[task_id]
            stats.publishes += published
            if published > max_publishes or (published == 0 and self.done.gaps == 0):
                problems.append(f"{task_id}: terminal state published {published} times")
        assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:30])
        return stats


def report(scenario: str, **facts: Any) -> None:
    """One line per scenario with the measured numbers (shown with ``pytest -s`` / ``-rP``)."""
    print(f"\n[chaos] {scenario}: " + " ".join(f"{k}={v}" for k, v in facts.items()))


async def wait_until(predicate: Any, what: str, timeout: float, interval: float = 0.05) -> None:
    """Poll an async predicate until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
