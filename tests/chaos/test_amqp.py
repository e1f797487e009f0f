"""Chaos on RabbitMQ: the scenarios of the Redis chaos suite that RabbitMQ changes, on a broker
``amqp://`` vhost of each test's own with the scenario's Redis as result backend (``chaos_amqp``).

With RabbitMQ the queue is RabbitMQ's: a worker's unacknowledged messages go back to the queue when
its connection drops (SIGKILL, or the broker closing it), and ``begin.lua`` on the Redis record
decides what a redelivered message does: start the task (crash counted if its last attempt never
finished), hold it while the task's lease is live (another worker still runs it), or acknowledge it
unrun (the task is final, or the message is stale). Workers run with a 2 s lease (``FAST_ENV``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import time
import uuid

import pytest

from aiocelery import ResultTimeout, SendError, TaskDead

from .. import rabbitmq
from ..helpers import publish_raw
from ..procs import run_cli
from .harness import QUEUE, TASKS_MODULE, Chaos, Supervisor, report, wait_until

LEASE_S = 2.0


async def runs_settle(chaos: Chaos, ids: list[str], quiet_s: float, timeout: float) -> int:
    """Wait until the ids' total runs in the ledger stop growing for ``quiet_s``; that total."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        total = sum(len(r) for r in (await chaos.all_runs(ids)).values())
        if total != last:
            last, since = total, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return total
        if time.monotonic() > deadline:
            raise AssertionError(f"runs still growing after {timeout} s ({total})")
        await asyncio.sleep(0.05)


# -- 1. a worker SIGKILLed mid-task -------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_amqp_sigkill_mid_task_redelivers_its_messages(chaos_amqp: Chaos) -> None:
    """The victim runs a long task (``slow_first``: 60 s on its first attempt) while both workers
    drain 200 short ones. Then it is frozen (SIGSTOP) while 200 more are sent: RabbitMQ pushes it
    its prefetch's worth, which it never starts; the survivor runs the rest. Then SIGKILL: RabbitMQ
    requeues the victim's unacknowledged messages, the survivor starts the held short tasks at once
    and holds the long one, whose record is still STARTED, until its lease ends: then a crash,
    attempt 2. (The freeze makes the counts exact: no short task is cut between its side effect and
    its outcome. A 4 s lease here, so that it is still live at the kill.)"""
    chaos = chaos_amqp
    concurrency, lease_s = 4, 4.0
    env = {"AIOCELERY_LEASE_S": str(lease_s)}
    victim = chaos.worker("victim", concurrency=concurrency, **env)
    await chaos.ready(victim)
    app = chaos.app()
    slow = await app.send_task("chaos.slow_first", [-1, 60])
    [first] = await chaos.wait_runs(slow.id, 1, timeout=10)
    survivor = chaos.worker("survivor", concurrency=concurrency, **env)
    await chaos.ready(survivor)

    batch1 = await chaos.send_many(app, "chaos.echo", [[i] for i in range(200)])
    assert await chaos.results(batch1, timeout=20, watch=[victim, survivor]) == list(range(200))
    by_worker1 = {w: sum(r.worker == w for rs in (await chaos.all_runs([r.id for r in batch1])).values() for r in rs)
                  for w in ("victim", "survivor")}
    assert by_worker1["victim"] > 0, by_worker1  # the victim was draining too, beside its long task

    victim.signal(signal.SIGSTOP)
    batch2 = await chaos.send_many(app, "chaos.echo", [[i] for i in range(200, 400)])
    ids2 = [r.id for r in batch2]
    ran = await runs_settle(chaos, ids2, quiet_s=0.5, timeout=20)
    held_by_victim = len(ids2) - ran
    lease_ms, now = await chaos.rds.hget(chaos.task_key(slow.id), "lease_ms"), await chaos.rds.time()
    lease_left_s = int(lease_ms) / 1000 - (now[0] + now[1] / 1e6)
    killed_at = await chaos.kill(victim)
    # prefetch = concurrency: the long task's message and three more, never started
    assert held_by_victim == concurrency - 1, held_by_victim

    assert await chaos.results(batch2, timeout=20, watch=[survivor]) == list(range(200, 400))
    assert await slow.get(timeout=LEASE_S + 10) == -1
    recovered_s = time.time() - killed_at
    runs = await chaos.all_runs(ids2)
    redelivered = {i: rs[0] for i, rs in runs.items() if len(rs) == 1 and rs[0].redelivered}
    assert len(redelivered) == held_by_victim, (held_by_victim, redelivered)
    assert all(r.worker == "survivor" and r.attempt == 1 and r.t > killed_at for r in redelivered.values())
    requeued_s = max(r.t for r in redelivered.values()) - killed_at

    slow_runs = await chaos.runs(slow.id)
    assert [(r.worker, r.attempt, r.redelivered) for r in slow_runs] == [
        ("victim", 1, False), ("survivor", 2, True)], slow_runs
    assert first.pid == victim.pid
    rerun_s = slow_runs[1].t - killed_at
    assert lease_left_s > 0.5, f"the lease had {lease_left_s:.2f} s left at the kill: the freeze took too long"
    assert lease_left_s - 0.2 <= rerun_s <= lease_left_s + 1.0, (
        f"the long task ran again {rerun_s:.2f} s after the kill; its lease had {lease_left_s:.2f} s left")
    record = await chaos.record(slow.id)
    assert (record["state"], record["attempt"], record["crashes"], record["worker"]) == (
        "SUCCESS", "2", "1", "survivor"), record

    short = await chaos.verify([r.id for r in batch1 + batch2])  # each exactly once, queue empty
    long = await chaos.verify([slow.id], values={slow.id: -1}, min_runs=2, max_runs=2)
    assert short.runs == 400 and short.duplicates == 0 and short.crashes == 0, short
    report("amqp 1 sigkill mid-task", tasks=401, executions=short.runs + long.runs, duplicates=long.duplicates,
           held_by_frozen_victim=held_by_victim, requeued_ran_after_s=f"{requeued_s:.2f}",
           lease_left_at_kill_s=f"{lease_left_s:.2f}", long_rerun_after_s=f"{rerun_s:.2f}",
           all_done_after_s=f"{recovered_s:.2f}", batch1_split=by_worker1,
           short=short.line(), long=long.line())


# -- 2. RabbitMQ closes every connection mid-drain -----------------------------------------------


@pytest.mark.timeout(120)
async def test_amqp_broker_closes_every_connection_mid_drain(chaos_amqp: Chaos) -> None:
    """Two workers drain 2,000 short tasks while a client keeps sending them (50 at a time); midway
    RabbitMQ closes every connection of the vhost (``rabbitmqctl close_all_connections``). Workers
    and client reconnect by themselves (aio-pika's robust connection, consumers restored); every
    task ends SUCCESS, none is lost, none runs twice.

    Why none runs twice: the close requeues every unacknowledged message, but a running task's
    record is STARTED under a live lease (renewed over Redis, which stayed up), so its redelivered
    message is held until that run's outcome is stored and then acknowledged unrun ("done"); a
    finished task's message whose ack was lost is acknowledged unrun too; and of a message left in a
    worker's buffer and its redelivered copy, the first begin.lua starts the task, which holds the
    other one the same way.

    A send that fails during the close raises SendError; the client sends it again with the same id,
    as SendError says. That finds the record made by the failed send, still held for a sender (its
    publish was never confirmed), and publishes it at once as a new publication (enqueue.lua), so
    the failed message, if RabbitMQ had it after all, is stale; had the client given up, a relay
    would publish it when the hold expires (RELAY_CLAIM_MS, 30 s)."""
    chaos = chaos_amqp
    assert chaos.amqp_vhost is not None
    workers = await chaos.workers(2, concurrency=8)
    app = chaos.app(send_timeout_s=5.0)
    n, chunk = 2000, 50
    ids = [f"close-{i}-{uuid.uuid4().hex[:8]}" for i in range(n)]
    failed: dict[str, int] = {}  # task id -> sends that raised SendError
    failed_at: dict[str, float] = {}  # task id -> its first failed send
    causes: collections.Counter[str] = collections.Counter()

    async def send_one(i: int) -> None:
        for _ in range(200):  # bounded: about 40 s of retries
            try:
                await app.send_task("chaos.sleep", [i, 0.05], task_id=ids[i])
                return
            except SendError as exc:  # anything else fails the test: the App wraps every broker error
                failed[ids[i]] = failed.get(ids[i], 0) + 1
                failed_at.setdefault(ids[i], time.time())
                causes[type(exc.__cause__).__name__] += 1
            await asyncio.sleep(0.2)
        raise AssertionError(f"task {i} could not be sent for 40 s")

    async def client() -> None:
        for start in range(0, n, chunk):
            await asyncio.gather(*(send_one(i) for i in range(start, min(n, start + chunk))))
            await asyncio.sleep(0.05)

    await app.broker.ensure_queues([QUEUE])  # the client connects
    connections_before = await asyncio.to_thread(rabbitmq.connection_count, chaos.amqp_vhost)
    assert connections_before == 3, connections_before  # two workers and the client
    sending = asyncio.ensure_future(client())
    try:
        await chaos.wait_total_runs(ids, 500, timeout=20)
        assert not sending.done(), "the client had sent everything before the close"
        closed_at = time.time()
        await asyncio.to_thread(rabbitmq.close_all_connections, chaos.amqp_vhost, "chaos: closing every connection")

        async def reconnected() -> bool:
            return await asyncio.to_thread(rabbitmq.connection_count, chaos.amqp_vhost) >= connections_before
        await wait_until(reconnected, "every process connected again", timeout=20, interval=0.1)
        reconnected_s = time.time() - closed_at
        await asyncio.wait_for(sending, 60)
    finally:
        sending.cancel()
    sent_s = time.time() - closed_at

    results = [app.AsyncResult(i) for i in ids]
    try:
        assert await chaos.results(results, timeout=45, watch=workers) == list(range(n))
    except ResultTimeout:
        states = await chaos.states(ids)
        stuck = [i for i, st in states.items() if st != "SUCCESS"]
        held = len(set(stuck) & set(failed))
        raise AssertionError(f"states {dict(collections.Counter(states.values()))}; of the {len(stuck)} "
                             f"unfinished, {held} had a failed send; delayed set: "
                             f"{await chaos.rds.zcard(chaos.delayed)}; RabbitMQ queue: "
                             f"{await chaos.amqp_depth()} message(s)") from None
    done_s = time.time() - closed_at

    runs = await chaos.all_runs(ids)
    twice = {i: rs for i, rs in runs.items() if len(rs) > 1}
    assert not twice, {i: [(r.worker, r.attempt, r.redelivered, round(r.t - closed_at, 3)) for r in rs]
                       for i, rs in list(twice.items())[:10]}
    after = collections.Counter(r.worker for rs in runs.values() for r in rs if r.t > closed_at + reconnected_s)
    assert set(after) == {"w1", "w2"}, after  # both workers consume again
    when = sorted(failed_at.values()) or [closed_at]
    sends_failed_s = (when[0] - closed_at, when[-1] - closed_at)
    late = [rs[0].t - failed_at[i] for i, rs in runs.items() if i in failed_at]
    assert all(w.popen.poll() is None for w in workers)
    assert not any("unexpected fetch error" in w.stderr for w in workers), "\n".join(w.stderr for w in workers)
    stats = await chaos.verify(ids, values={i: k for k, i in enumerate(ids)})
    assert stats.runs == n and stats.duplicates == 0 and stats.crashes == 0, stats
    report("amqp 2 close_all_connections mid-drain", tasks=n, executions=stats.runs, duplicates=stats.duplicates,
           runs_before_close=sum(1 for rs in runs.values() if rs[0].t < closed_at),
           reconnected_after_s=f"{reconnected_s:.2f}",
           sends_failed_from_to_s=f"{sends_failed_s[0]:.2f}..{sends_failed_s[1]:.2f}",
           failed_sends=sum(failed.values()), tasks_with_failed_send=len(failed), causes=dict(causes),
           failed_send_tasks_ran_s_after_it=f"{min(late, default=0):.1f}..{max(late, default=0):.1f}",
           all_sent_after_s=f"{sent_s:.2f}", all_done_after_s=f"{done_s:.2f}", runs_after_reconnect=dict(after),
           stats=stats.line())


# -- 3. a poison task that kills its worker, under a supervisor ----------------------------------


@pytest.mark.timeout(90)
async def test_amqp_poison_task_is_dead_after_max_crashes_others_continue(chaos_amqp: Chaos) -> None:
    """``chaos.suicide`` SIGKILLs the worker running it. Each time, RabbitMQ requeues the dead
    worker's messages and another worker holds the poison's until the dead one's lease ends, then
    starts it again counting a crash; the supervisor restarts the dead. Past max_crashes begin.lua
    ends it DEAD with a dead letter. Short tasks sent with it all succeed: one that was running in
    a killed worker may run again (its run was cut off before its outcome was stored: at-least-once),
    and only then; those sent after the poison is dead run exactly once."""
    chaos = chaos_amqp
    max_crashes = 2
    env = {"AIOCELERY_MAX_CRASHES": str(max_crashes)}
    workers = await chaos.workers(2, concurrency=4, **env)
    supervisor = Supervisor(chaos, workers, max_restarts=8, concurrency=4, **env)
    supervisor.start()
    t0 = time.time()
    try:
        app = chaos.app()
        poison = await app.send_task("chaos.suicide")
        others = await chaos.send_many(app, "chaos.echo", [[i] for i in range(40)], chunk=5)
        with pytest.raises(TaskDead) as info:
            await poison.get(timeout=40)
        dead_s = time.time() - t0
        assert "chaos.suicide" in str(info.value) and "crashed its worker" in info.value.reason
        assert await chaos.results(others, timeout=30) == list(range(40))
        more = await chaos.send_many(app, "chaos.echo", [[i] for i in range(40, 100)])
        assert await chaos.results(more, timeout=20, watch=supervisor.workers) == list(range(40, 100))
    finally:
        await supervisor.stop()
    assert supervisor.restarts == max_crashes + 1, supervisor.restarts
    killed = {p.pid for p in chaos.procs.started if p.popen.poll() == -signal.SIGKILL}
    assert len(killed) == max_crashes + 1, [p.describe() for p in chaos.procs.started if p.popen.poll() is not None]

    poison_runs = await chaos.runs(poison.id)
    assert [r.attempt for r in poison_runs] == list(range(1, max_crashes + 2)), poison_runs
    assert {r.pid for r in poison_runs} == killed  # each run killed its own worker
    record = await chaos.record(poison.id)
    assert (record["state"], record["crashes"]) == ("DEAD", str(max_crashes + 1)), record
    letters = await chaos.dead_letters()
    assert len(letters) == 1, letters
    [letter] = letters
    assert (letter["id"], letter["name"]) == (poison.id, "chaos.suicide"), letter
    assert letter["reason"] == f"crashed its worker {max_crashes + 1} times (max_crashes {max_crashes})", letter
    listed = run_cli("dead", "list", "-A", f"{TASKS_MODULE}:app", "-Q", QUEUE, cwd=chaos.tmp_path, env=chaos.env())
    assert listed.returncode == 0, listed.stderr
    assert poison.id in listed.stdout and letter["reason"] in listed.stdout, listed.stdout

    # collateral re-runs: only of tasks whose earlier runs were all in a worker the poison killed
    other_runs = await chaos.all_runs([r.id for r in others])
    collateral = {i: rs for i, rs in other_runs.items() if len(rs) > 1}
    unexplained = {i: rs for i, rs in collateral.items()
                   if any(r.pid not in killed for r in rs[:-1]) or rs[-1].pid in killed}
    assert not unexplained, unexplained
    s_others = await chaos.verify([r.id for r in others], max_runs=max_crashes + 1)
    s_more = await chaos.verify([r.id for r in more])  # after the poison: exactly once each
    s_poison = await chaos.verify([poison.id], state="DEAD", min_runs=max_crashes + 1, max_runs=max_crashes + 1)
    assert s_more.duplicates == 0 and s_more.runs == 60
    report("amqp 3 poison task", tasks=1 + len(others) + len(more), restarts=supervisor.restarts,
           poison_runs=len(poison_runs), dead_letters=len(letters), dead_after_s=f"{dead_s:.2f}",
           collateral_reruns=sum(len(rs) - 1 for rs in collateral.values()), others=s_others.line(),
           after=s_more.line(), poison=s_poison.line())


# -- 4. malformed messages put on the queue by hand ---------------------------------------------


MALFORMED = [b"not a task", b"", b"12", b"x1 abc", b"1 \xff\xfe"]
"""Bodies that are not ``<digits> <task id>`` (the last one's task id is not UTF-8)."""


@pytest.mark.timeout(60)
async def test_amqp_malformed_messages_are_dead_lettered_acked_and_the_worker_goes_on(chaos_amqp: Chaos) -> None:
    chaos = chaos_amqp
    [worker] = await chaos.workers(1, concurrency=4)
    app = chaos.app()
    before = await chaos.send_many(app, "chaos.echo", [[i] for i in range(10)])
    assert await chaos.results(before, timeout=15, watch=[worker]) == list(range(10))

    t0 = time.monotonic()
    for body in MALFORMED:
        await publish_raw(app, QUEUE, body)
    await publish_raw(app, QUEUE, b"7 unknown-id")  # well formed, but no such task

    async def all_dead() -> bool:
        return len(await chaos.dead_letters()) >= len(MALFORMED) + 1
    await wait_until(all_dead, "a dead letter for each bad message", timeout=10)
    dead_s = time.monotonic() - t0

    after = await chaos.send_many(app, "chaos.echo", [[i] for i in range(100, 200)])
    assert await chaos.results(after, timeout=15, watch=[worker]) == list(range(100, 200))

    letters = await chaos.dead_letters()
    assert len(letters) == len(MALFORMED) + 1, letters
    malformed = sorted(d["reason"] for d in letters if d["id"] == "")
    assert malformed == sorted(f"malformed message: not '<publication> <task id>' but {body!r}"
                               for body in MALFORMED), malformed
    [missing] = [d for d in letters if d["id"] == "unknown-id"]
    assert missing["reason"] == "task record missing", missing
    assert {d["worker"] for d in letters} == {"w1"}, letters
    assert worker.popen.poll() is None, worker.describe()
    assert "dead-lettered" in worker.stderr

    ids = [r.id for r in before + after]
    runs = await chaos.all_runs(ids)
    assert {r.pid for rs in runs.values() for r in rs} == {worker.pid}  # the same worker ran them all
    stats = await chaos.verify(ids)  # drained: the RabbitMQ queue is empty (every bad message acked)
    assert stats.runs == len(ids) and stats.duplicates == 0, stats

    # the CLI sees them: `dead list` (the Redis dead stream) and `queues` (RabbitMQ's numbers)
    env = chaos.env()
    listed = run_cli("dead", "list", "-A", f"{TASKS_MODULE}:app", "-Q", QUEUE, cwd=chaos.tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "unknown-id" in listed.stdout and "task record missing" in listed.stdout, listed.stdout
    assert listed.stdout.count("malformed message") == len(MALFORMED), listed.stdout
    assert "b'not a task'" in listed.stdout, listed.stdout
    queues = run_cli("queues", "-A", f"{TASKS_MODULE}:app", "--json", cwd=chaos.tmp_path, env=env)
    assert queues.returncode == 0, queues.stderr
    [row] = json.loads(queues.stdout)
    assert (row["queue"], row["waiting"], row["delayed"], row["dead"]) == (QUEUE, 0, 0, len(MALFORMED) + 1), row
    table = run_cli("queues", "-A", f"{TASKS_MODULE}:app", "-Q", QUEUE, cwd=chaos.tmp_path, env=env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[1].split()[:5] == [QUEUE, "0", "0", "0", str(len(MALFORMED) + 1)], table.stdout
    report("amqp malformed messages", dead_letters=len(letters), published_and_dead_lettered_in_s=f"{dead_s:.2f}",
           queue_depth=await chaos.amqp_depth(), **stats.__dict__)
