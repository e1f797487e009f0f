"""Soak: many tasks through SIGKILLed workers and a kill -9'd Redis; nothing lost, every duplicate explained.

Starts, all on 127.0.0.1 free ports and under one temp dir (removed on exit):

- the BROKER redis-server, AOF ``appendfsync always``: kill -9'd and restarted on the same port
  with the same AOF directory ``--redis-restarts`` times during the run;
- a LEDGER redis-server (no persistence) that is never faulted: each execution of the task appends
  ``"<worker pid>:<attempt>"`` to ``runs:<task id>`` there before returning (``bench/soak_tasks.py``);
- ``--workers`` worker subprocesses (``python -m aiocelery worker -A bench.soak_tasks:app``), with a
  short lease; every ``--kill-every`` seconds (jittered x0.5..x1.5) a random one is SIGKILLed and a
  replacement started at once.

The client (this process) sends ``--tasks`` tasks with ``delay()`` in concurrently gathered chunks
(re-sending the same task id with ``apply_async(task_id=...)`` after a SendError, as the contract
says), and awaits every result, retrying ``get()`` through connection errors, until ``--deadline``.

Afterwards it prints one summary line::

    sent 20000 / completed 20000 / lost 0 / duplicated 12 (12 after a worker kill) / dead 0

- completed: SUCCESS with the right value; lost: sent but no terminal state before the deadline,
  or the record vanished; duplicated: ids the ledger shows run more than once, of which "after a
  worker kill" are those whose every other run was on a worker this soak SIGKILLed;
- then timing, kills, restarts, re-sends, the stream's XLEN and XPENDING (both must be 0), and a
  digest of the workers' WARNING/ERROR log lines.

Exit status 1 when a task is lost, a duplicate is not explained by a kill, a value is wrong, a task
failed, the stream is not drained, or a worker stopped consuming after a Redis restart; else 0.

Run it: ``make soak`` or ``python -m bench.soak [--tasks 2000 --workers 3 --kill-every 2 --redis-restarts 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402

QUEUE = "aiocelery"  # Config.default_queue
GROUP = "aiocelery"  # _redis/keys.py GROUP
TRANSIENT = (ConnectionError, OSError, TimeoutError, redis.exceptions.ConnectionError,
             redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)
BATCH = 1000


# -- options ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=20_000, help="tasks to send (default: 20000)")
    p.add_argument("--workers", type=int, default=3, help="worker processes kept running (default: 3)")
    p.add_argument("--kill-every", type=float, default=3.0, metavar="S",
                   help="SIGKILL a random worker every S seconds, jittered x0.5..x1.5; 0 = never (default: 3)")
    p.add_argument("--redis-restarts", type=int, default=2, metavar="N",
                   help="kill -9 and restart the broker Redis N times, at evenly spaced points of the "
                        "run's progress (default: 2)")
    p.add_argument("--redis-down", type=float, default=1.0, metavar="S",
                   help="seconds the broker Redis stays down at each restart (default: 1)")
    p.add_argument("--concurrency", type=int, default=50, metavar="N",
                   help="tasks each worker runs at once, its -c (default: 50)")
    p.add_argument("--lease", type=float, default=3.0, metavar="S",
                   help="workers' lease, AIOCELERY_LEASE_S (default: 3)")
    p.add_argument("--reclaim-interval", type=float, default=0.5, metavar="S",
                   help="workers' AIOCELERY_RECLAIM_INTERVAL_S (default: 0.5)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the kill schedule (default: random, printed at the start)")
    p.add_argument("--send-rate", type=float, default=1000.0, metavar="PER_S",
                   help="sending pace in tasks/s so faults hit a busy system; 0 = as fast as possible "
                        "(default: 1000)")
    p.add_argument("--chunk", type=int, default=200, help="tasks sent concurrently per gather (default: 200)")
    p.add_argument("--task-ms", type=float, default=20.0, metavar="MS",
                   help="each task sleeps a random 0..MS ms before recording itself (default: 20)")
    p.add_argument("--send-timeout", type=float, default=5.0, metavar="S",
                   help="client's AIOCELERY_SEND_TIMEOUT_S (default: 5)")
    p.add_argument("--grace", type=float, default=5.0, metavar="S",
                   help="workers' --grace for the final SIGTERM (default: 5)")
    p.add_argument("--deadline", type=float, default=300.0, metavar="S",
                   help="overall limit for sending and awaiting every result (default: 300)")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the temp dir (worker logs, AOF) instead of deleting it, and print its path")
    args = p.parse_args(argv)
    for name in ("tasks", "workers", "concurrency", "chunk"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    for name in ("lease", "reclaim_interval", "grace", "deadline", "send_timeout"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


# -- processes ----------------------------------------------------------------------------------


@dataclass
class WorkerProc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float
    ended: float | None = None
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class Cluster:
    """Owns the two redis-servers and every worker process; ``close()`` ends them all."""

    args: argparse.Namespace
    tmp: Path
    prefix: str = field(default_factory=lambda: f"soak-{uuid.uuid4().hex[:8]}")
    broker: RedisServer | None = None
    ledger: RedisServer | None = None
    workers: list[WorkerProc] = field(default_factory=list)
    restarts: list[tuple[float, float]] = field(default_factory=list)
    """(down at, up again at), wall clock."""
    unexpected_exits: list[str] = field(default_factory=list)

    def start_servers(self) -> None:
        for sub in ("broker", "ledger", "logs"):
            (self.tmp / sub).mkdir()
        self.broker = RedisServer(persistent=True, workdir=self.tmp / "broker").start()
        self.ledger = RedisServer(persistent=False, workdir=self.tmp / "ledger").start()

    def worker_env(self) -> dict[str, str]:
        assert self.broker is not None and self.ledger is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOCELERY_")}
        env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", LEDGER_URL=self.ledger.url,
                   AIOCELERY_BROKER=self.broker.url, AIOCELERY_KEY_PREFIX=self.prefix,
                   AIOCELERY_LEASE_S=str(self.args.lease),
                   AIOCELERY_RECLAIM_INTERVAL_S=str(self.args.reclaim_interval),
                   AIOCELERY_FETCH_BLOCK_S="0.5", AIOCELERY_SEND_TIMEOUT_S=str(self.args.send_timeout))
        return env

    def start_worker(self) -> WorkerProc:
        name = f"soak-w{len(self.workers) + 1}"
        log = self.tmp / "logs" / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "aiocelery", "worker", "-A", "bench.soak_tasks:app",
                 "-c", str(self.args.concurrency), "-n", name, "--grace", str(self.args.grace), "-l", "info"],
                cwd=ROOT, env=self.worker_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)  # a Ctrl-C in the terminal reaches only the soak, which kills them
        w = WorkerProc(name, popen, log, time.time())
        self.workers.append(w)
        return w

    def live(self) -> list[WorkerProc]:
        return [w for w in self.workers if w.ended is None]

    def kill_one(self, rng: random.Random) -> WorkerProc | None:
        """SIGKILL a random live worker and start its replacement at once."""
        live = self.live()
        if not live:
            return None
        victim = rng.choice(live)
        victim.killed = True
        victim.popen.kill()
        victim.popen.wait(10)
        victim.ended = time.time()
        self.start_worker()
        return victim

    def replace_exited(self) -> None:
        """A worker that exited by itself is a finding; note it and keep the count up."""
        for w in self.live():
            code = w.popen.poll()
            if code is not None:
                w.ended = time.time()
                self.unexpected_exits.append(f"{w.name} (pid {w.pid}) exited by itself with code {code}")
                self.start_worker()

    def restart_broker(self, down_s: float) -> None:
        """kill -9 the broker Redis, wait ``down_s``, start it again on the same port and AOF dir."""
        assert self.broker is not None
        down_at = time.time()
        self.broker.stop(kill=True)
        time.sleep(down_s)
        self.broker.start()
        self.restarts.append((down_at, time.time()))

    def stop_workers(self, grace: float) -> None:
        """SIGTERM every live worker; SIGKILL what has not exited after the grace period."""
        live = self.live()
        for w in live:
            with contextlib.suppress(ProcessLookupError):
                w.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 5
        for w in live:
            try:
                w.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.unexpected_exits.append(f"{w.name} (pid {w.pid}) did not exit within {grace + 5:g} s "
                                             "of SIGTERM; killed")
                w.popen.kill()
                w.popen.wait(10)
            w.ended = time.time()

    def close(self) -> None:
        """Kill whatever is still running: workers, then both redis-servers."""
        for w in self.workers:
            if w.popen.poll() is None:
                w.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.popen.wait(10)
        for server in (self.broker, self.ledger):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop(kill=True)

    def wait_ready(self, timeout: float) -> None:
        """Until every live worker logged that it is consuming (its imports and Redis work)."""
        deadline = time.monotonic() + timeout
        for w in self.live():
            while "ready: consuming" not in w.log.read_text("utf-8", "replace"):
                if w.popen.poll() is not None or time.monotonic() > deadline:
                    raise SoakError(f"worker {w.name} did not start:\n{w.log.read_text('utf-8', 'replace')}")
                time.sleep(0.05)


class SoakError(Exception):
    """The soak itself could not run (a worker did not start, a send never got through)."""


# -- the client ---------------------------------------------------------------------------------


@dataclass
class Client:
    """Sends every task and awaits every result; counts what it had to retry."""

    args: argparse.Namespace
    app: Any
    deadline: float
    """loop.time() after which nothing is retried any more."""
    ids: dict[str, int] = field(default_factory=dict)
    """task id -> index (its argument)."""
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    send_errors: int = 0
    resends: int = 0
    get_retries: int = 0
    unsent: int = 0
    hung: int = 0
    """get() calls still waiting 15 s past the deadline (their timeout should have ended them)."""
    sent_done_at: float = 0.0
    waiters: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def progress(self) -> float:
        """0..1: half for sending, half for results."""
        return (len(self.ids) + len(self.outcomes)) / (2 * int(self.args.tasks))

    async def send_all(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n, chunk, rate = self.args.tasks, self.args.chunk, self.args.send_rate
        for lo in range(0, n, chunk):
            if rate > 0:
                await asyncio.sleep(max(0.0, start + lo / rate - loop.time()))
            await asyncio.gather(*(self.send_one(i) for i in range(lo, min(n, lo + chunk))))
        self.sent_done_at = loop.time()

    async def send_one(self, index: int) -> None:
        from aiocelery import SendError
        from bench.soak_tasks import record

        try:
            result = await record.delay(index, self.args.task_ms)
            return self._sent(result.id, index)
        except SendError as exc:
            task_id = exc.task_id
            self.send_errors += 1
        loop = asyncio.get_running_loop()
        delay = 0.1
        while loop.time() < self.deadline:
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, 2.0)
            try:
                await record.apply_async((index, self.args.task_ms), task_id=task_id)
                return self._sent(task_id, index)
            except SendError:
                self.resends += 1
        self.unsent += 1

    def _sent(self, task_id: str, index: int) -> None:
        self.ids[task_id] = index
        self.waiters.append(asyncio.get_running_loop().create_task(self.await_one(task_id, index)))

    async def await_one(self, task_id: str, index: int) -> None:
        self.outcomes[task_id] = await self._outcome(task_id, index)

    async def _outcome(self, task_id: str, index: int) -> tuple[str, str]:
        from aiocelery import ResultLost, ResultNotFound, ResultTimeout, TaskDead, TaskFailed, TaskRevoked
        from bench.soak_tasks import expected

        loop = asyncio.get_running_loop()
        delay = 0.1
        while (remaining := self.deadline - loop.time()) > 0:
            try:
                value = await self.app.AsyncResult(task_id).get(timeout=min(remaining, 30.0))
            except ResultTimeout:
                continue
            except TaskDead as exc:
                return "dead", exc.reason
            except (TaskFailed, TaskRevoked) as exc:
                return "failed", str(exc).splitlines()[0]
            except ResultNotFound:
                return "lost", "record vanished (ResultNotFound after a successful send)"
            except (ResultLost, *TRANSIENT):
                self.get_retries += 1
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, 2.0)
                continue
            if value != expected(index):
                return "wrong", f"returned {value!r}, expected {expected(index)!r}"
            return "ok", ""
        return "lost", "no terminal state before the deadline"


# -- the supervisor -----------------------------------------------------------------------------


@dataclass
class Supervisor:
    cluster: Cluster
    client: Client
    rng: random.Random
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def kill_loop(self) -> None:
        every = self.cluster.args.kill_every
        if every <= 0:
            return
        while not self.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), every * self.rng.uniform(0.5, 1.5))
                return
            self.cluster.kill_one(self.rng)

    async def watch_loop(self) -> None:
        while not self.done.is_set():
            self.cluster.replace_exited()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), 0.2)

    async def restart_loop(self) -> None:
        n = self.cluster.args.redis_restarts
        for i in range(1, n + 1):
            while self.client.progress < i / (n + 1):
                if self.done.is_set():
                    return
                await asyncio.sleep(0.05)
            await asyncio.to_thread(self.cluster.restart_broker, self.cluster.args.redis_down)


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Timing:
    started: float = 0.0
    sent: float = 0.0
    drained: float = 0.0


async def run(args: argparse.Namespace, cluster: Cluster) -> int:
    from bench.soak_tasks import app

    loop = asyncio.get_running_loop()
    timing = Timing(started=loop.time())
    client = Client(args, app, deadline=loop.time() + args.deadline)
    sup = Supervisor(cluster, client, random.Random(args.seed))
    background = [loop.create_task(c) for c in (sup.kill_loop(), sup.watch_loop(), sup.restart_loop())]
    try:
        async with asyncio.timeout_at(client.deadline + 15):  # past it, a send or get() hangs: a finding
            await client.send_all()
            timing.sent = loop.time()
            await asyncio.gather(*client.waiters)
    except TimeoutError:
        client.hung = sum(1 for w in client.waiters if not w.done())
        print(f"soak: the deadline passed with {client.hung} get() call(s) still waiting", file=sys.stderr)
    finally:
        timing.sent = timing.sent or loop.time()
        timing.drained = loop.time()
        sup.done.set()
        for waiter in client.waiters:
            waiter.cancel()
        await asyncio.gather(*background, *client.waiters, return_exceptions=True)
        await app.close()
    stream = await stream_state(cluster, args.lease + args.reclaim_interval + 3)
    await asyncio.to_thread(cluster.stop_workers, args.grace)
    report = await analyse(cluster, client)
    return print_report(args, cluster, client, report, timing, stream)


async def stream_state(cluster: Cluster, wait_s: float) -> tuple[int, int]:
    """XLEN and XPENDING count of the queue's stream, polled until both are 0 or ``wait_s`` passed."""
    assert cluster.broker is not None
    rds = aioredis.Redis.from_url(cluster.broker.url)
    key = f"{cluster.prefix}:{{{QUEUE}}}:stream"
    deadline = time.monotonic() + wait_s
    try:
        while True:
            length = int(await rds.xlen(key))
            pending = int((await rds.xpending(key, GROUP))["pending"]) if length or await rds.exists(key) else 0
            if (length == 0 and pending == 0) or time.monotonic() > deadline:
                return length, pending
            await asyncio.sleep(0.2)
    finally:
        await rds.aclose()


# -- analysis -----------------------------------------------------------------------------------


@dataclass
class Report:
    runs: dict[str, list[tuple[int, int, float]]]
    """task id -> [(pid, attempt, time)] from the ledger."""
    records: dict[str, tuple[str, int, int]]
    """task id -> (state, attempt, crashes) from the broker."""
    unknown_runs: int
    duplicated: list[str] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)


def chunks(items: list[str], size: int = BATCH) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


async def analyse(cluster: Cluster, client: Client) -> Report:
    assert cluster.broker is not None and cluster.ledger is not None
    ids = list(client.ids)
    ledger = aioredis.Redis.from_url(cluster.ledger.url)
    broker = aioredis.Redis.from_url(cluster.broker.url)
    try:
        runs = await read_ledger(ledger, ids)
        records = await read_records(broker, cluster.prefix, ids)
        all_keys = [k async for k in ledger.scan_iter(match="runs:*", count=1000)]
    finally:
        await ledger.aclose()
        await broker.aclose()
    report = Report(runs, records, unknown_runs=len(all_keys) - sum(1 for r in runs.values() if r))
    killed = {w.pid for w in cluster.workers if w.killed}
    for task_id, entries in runs.items():
        if len(entries) > 1:
            report.duplicated.append(task_id)
            winner = records.get(task_id, ("", -1, 0))[1]
            attempts = [a for _, a, _ in entries]
            others = [pid for pid, a, _ in entries if a != winner]
            ok = len(set(attempts)) == len(attempts) and winner in attempts and all(p in killed for p in others)
            (report.explained if ok else report.unexplained).append(task_id)
    return report


async def read_ledger(ledger: aioredis.Redis, ids: list[str]) -> dict[str, list[tuple[int, int, float]]]:
    out: dict[str, list[tuple[int, int, float]]] = {}
    for batch in chunks(ids):
        async with ledger.pipeline(transaction=False) as pipe:
            for task_id in batch:
                pipe.lrange(f"runs:{task_id}", 0, -1)
                pipe.lrange(f"when:{task_id}", 0, -1)
            replies = await pipe.execute()
        for i, task_id in enumerate(batch):
            entries, times = replies[2 * i], replies[2 * i + 1]
            parsed = [tuple(int(x) for x in e.decode().split(":")) for e in entries]
            out[task_id] = [(pid, attempt, float(t)) for (pid, attempt), t in zip(parsed, times, strict=True)]
    return out


async def read_records(broker: aioredis.Redis, prefix: str, ids: list[str]) -> dict[str, tuple[str, int, int]]:
    out: dict[str, tuple[str, int, int]] = {}
    for batch in chunks(ids):
        async with broker.pipeline(transaction=False) as pipe:
            for task_id in batch:
                pipe.hmget(f"{prefix}:task:{task_id}", "state", "attempt", "crashes")
            replies = await pipe.execute()
        for task_id, (state, attempt, crashes) in zip(batch, replies, strict=True):
            if state is not None:
                out[task_id] = (state.decode(), int(attempt or 0), int(crashes or 0))
    return out


def stalled_after_restarts(cluster: Cluster, report: Report) -> list[str]:
    """Workers alive across a restart that ran nothing afterwards while the others ran plenty."""
    by_pid: dict[int, list[float]] = defaultdict(list)
    for entries in report.runs.values():
        for pid, _, t in entries:
            by_pid[pid].append(t)
    findings = []
    for down_at, up_at in cluster.restarts:
        after = sum(1 for ts in by_pid.values() for t in ts if t > up_at)
        for w in cluster.workers:
            if w.started >= down_at or (w.ended is not None and w.ended < up_at + 2 * cluster.args.lease):
                continue
            mine = sum(1 for t in by_pid[w.pid] if up_at < t <= (w.ended or float("inf")))
            if mine == 0 and after >= 100:
                findings.append(f"{w.name} (pid {w.pid}) ran nothing after the restart at "
                                f"{time.strftime('%H:%M:%S', time.localtime(up_at))} while the others ran {after}")
    return findings


# -- output -------------------------------------------------------------------------------------


def print_report(args: argparse.Namespace, cluster: Cluster, client: Client, report: Report,
                 timing: Timing, stream: tuple[int, int]) -> int:
    kinds = Counter(kind for kind, _ in client.outcomes.values())
    lost = kinds["lost"] + (len(client.ids) - len(client.outcomes))
    kills = sum(1 for w in cluster.workers if w.killed)
    stalled = stalled_after_restarts(cluster, report)
    print(f"sent {len(client.ids)} / completed {kinds['ok']} / lost {lost} / duplicated {len(report.duplicated)} "
          f"({len(report.explained)} after a worker kill) / dead {kinds['dead']}")
    elapsed = timing.drained - timing.started
    print(f"time {elapsed:.1f} s ({len(client.outcomes) / elapsed:,.0f} tasks/s; sending "
          f"{timing.sent - timing.started:.1f} s); "
          f"{kills} worker kills, {len(cluster.restarts)} redis restarts "
          f"(down {', '.join(f'{up - down:.1f}' for down, up in cluster.restarts) or '-'} s); "
          f"{client.send_errors} send errors ({client.resends} more re-sends), {client.get_retries} get retries; "
          f"seed {args.seed}")
    print(f"stream after the drain: XLEN {stream[0]}, XPENDING {stream[1]}")
    problems = problem_lines(cluster, client, report, kinds, stream, stalled)
    for line in problems:
        print(f"PROBLEM: {line}")
    print_details(cluster, client, report)
    print_log_digest(cluster)
    return 1 if problems else 0


def problem_lines(cluster: Cluster, client: Client, report: Report, kinds: Counter[str],
                  stream: tuple[int, int], stalled: list[str]) -> list[str]:
    lost = kinds["lost"] + (len(client.ids) - len(client.outcomes))
    problems = [f"{lost} task(s) lost"] if lost else []
    if report.unexplained:
        problems.append(f"{len(report.unexplained)} duplicate(s) not explained by a worker kill")
    for kind in ("wrong", "failed"):
        if kinds[kind]:
            problems.append(f"{kinds[kind]} task(s) {kind}")
    if client.hung:
        problems.append(f"{client.hung} get() call(s) hung past their timeout")
    if client.unsent:
        problems.append(f"{client.unsent} task(s) could not be sent before the deadline")
    if stream != (0, 0):
        problems.append(f"stream not drained: XLEN {stream[0]}, XPENDING {stream[1]}")
    if report.unknown_runs:
        problems.append(f"{report.unknown_runs} task id(s) in the ledger that the client never sent")
    never_ran = [t for t, (kind, _) in client.outcomes.items() if kind == "ok" and not report.runs.get(t)]
    if never_ran:
        problems.append(f"{len(never_ran)} SUCCESS task(s) with no execution in the ledger")
    problems += stalled
    problems += cluster.unexpected_exits
    return problems


def print_details(cluster: Cluster, client: Client, report: Report, limit: int = 10) -> None:
    killed = {w.pid: w for w in cluster.workers if w.killed}
    names = {w.pid: w.name for w in cluster.workers}
    for task_id in report.unexplained[:limit]:
        entries = ", ".join(
            f"{names.get(pid, pid)}{'(killed)' if pid in killed else ''} attempt {a} at {_clock(t)}"
            for pid, a, t in report.runs[task_id])
        print(f"  unexplained duplicate {task_id}: record {report.records.get(task_id)}; runs: {entries}")
    shown = 0
    for task_id, (kind, detail) in client.outcomes.items():
        if kind != "ok" and shown < limit:
            shown += 1
            print(f"  {kind} {task_id}: {detail}; record {report.records.get(task_id)}; "
                  f"runs {report.runs.get(task_id)}")
    if report.unexplained or shown:
        restarts = ", ".join(f"{_clock(d)}-{_clock(u)}" for d, u in cluster.restarts)
        kills = ", ".join(f"{w.name} {_clock(w.ended or 0)}" for w in killed.values())
        print(f"  redis down: {restarts or '-'}; kills: {kills or '-'}")


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


_NOISE = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|\b[0-9a-f]{8,}\b|\d+(\.\d+)?(-\d+)?")


def print_log_digest(cluster: Cluster, limit: int = 20) -> None:
    """WARNING/ERROR lines of every worker log, numbers and ids blanked, counted by kind."""
    kinds: Counter[str] = Counter()
    example: dict[str, str] = {}
    for w in cluster.workers:
        with contextlib.suppress(OSError), w.log.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if " WARNING " not in line and " ERROR " not in line and "Traceback" not in line:
                    continue
                text = line.split("] ", 1)[-1].strip()
                key = _NOISE.sub("#", text)[:160]
                kinds[key] += 1
                example.setdefault(key, f"{w.name}: {text[:300]}")
    if not kinds:
        print("worker logs: no WARNING/ERROR lines")
        return
    print(f"worker logs: {sum(kinds.values())} WARNING/ERROR lines, by kind:")
    for key, count in kinds.most_common(limit):
        print(f"  {count:6d}  {example[key]}")


# -- main ---------------------------------------------------------------------------------------


def _sigterm(_signum: int, _frame: object) -> None:
    signal.raise_signal(signal.SIGINT)  # one path for both: asyncio.run cancels the run, cleanup follows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="aiocelery-soak-"))
    cluster = Cluster(args, tmp)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    logging.basicConfig(level=logging.WARNING, format="[client %(levelname)s %(name)s] %(message)s")
    code = 2
    try:
        cluster.start_servers()
        os.environ.update({k: v for k, v in cluster.worker_env().items() if k.startswith("AIOCELERY_")})
        print(f"soak: {args.tasks} tasks, {args.workers} workers x {args.concurrency}, "
              f"kill every ~{args.kill_every:g} s, {args.redis_restarts} redis restarts, "
              f"lease {args.lease:g} s, seed {args.seed}; "
              f"broker {cluster.broker.url if cluster.broker else ''}", flush=True)
        for _ in range(args.workers):
            cluster.start_worker()
        cluster.wait_ready(30)
        code = asyncio.run(run(args, cluster))
    except KeyboardInterrupt:
        print("soak: interrupted; cleaning up", file=sys.stderr)
        code = 130
    except SoakError as exc:
        print(f"soak: {exc}", file=sys.stderr)
    finally:
        cluster.close()
        if args.keep_logs:
            print(f"soak: logs and AOF kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
