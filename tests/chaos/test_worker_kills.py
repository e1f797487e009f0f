"""Worker processes die (docs/delivery.md, failure scenarios 1-4 and 15).

Workers run with a 2 s lease and reclaim every 0.5 s (``FAST_ENV``) unless a scenario says otherwise.
"""

from __future__ import annotations

import signal
import time

import pytest

from aiocelery import TaskDead

from .harness import Chaos, Supervisor, report, wait_until
from .proxy import FaultProxy

LEASE_S = 2.0
RECLAIM_S = 0.5


# -- 1. SIGKILL mid-task ------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("task", ["chaos.slow_first", "chaos.sync_slow_first"])
async def test_01_sigkill_mid_task_is_rerun_by_another_worker(chaos: Chaos, task: str) -> None:
    victim = chaos.worker("victim", concurrency=4)
    await chaos.ready(victim)
    app = chaos.app()
    result = await app.send_task(task, [41, 60])
    [first] = await chaos.wait_runs(result.id, 1, timeout=10)
    survivor = chaos.worker("survivor", concurrency=4)
    await chaos.ready(survivor)

    killed_at = await chaos.kill(victim)
    assert await result.get(timeout=LEASE_S + RECLAIM_S + 10) == 41
    runs = await chaos.runs(result.id)
    assert len(runs) == 2, runs
    second = runs[1]
    assert (first.worker, first.attempt, first.redelivered) == ("victim", 1, False)
    assert (second.worker, second.attempt, second.redelivered) == ("survivor", 2, True)
    redelivery_s = second.t - killed_at
    assert redelivery_s <= LEASE_S + RECLAIM_S + 1.5, f"redelivered {redelivery_s:.2f} s after the kill"
    record = await chaos.record(result.id)
    assert (record["state"], record["attempt"], record["crashes"], record["worker"]) == (
        "SUCCESS", "2", "1", "survivor"), record
    stats = await chaos.verify([result.id], values={result.id: 41}, min_runs=2, max_runs=2)
    report(f"01 sigkill mid-task ({task})", redelivery_s=f"{redelivery_s:.2f}", **stats.__dict__)


@pytest.mark.timeout(60)
async def test_01b_paused_worker_comes_back_as_a_zombie_and_is_fenced_out(chaos: Chaos) -> None:
    """SIGSTOP (a GC pause, a frozen VM) past the lease: the task is re-run elsewhere; when the
    zombie wakes up its run finishes too, but its outcome is fenced out: one result, the survivor's."""
    victim = chaos.worker("zombie", concurrency=4)
    await chaos.ready(victim)
    app = chaos.app()
    result = await app.send_task("chaos.whoami", [3.0])
    await chaos.wait_runs(result.id, 1, timeout=10)
    survivor = chaos.worker("survivor", concurrency=4)
    await chaos.ready(survivor)
    victim.signal(signal.SIGSTOP)
    try:
        await chaos.wait_runs(result.id, 2, timeout=LEASE_S + RECLAIM_S + 5)
        assert await result.get(timeout=10) == "survivor:2"
    finally:
        victim.signal(signal.SIGCONT)

    def fenced(line: str) -> bool:  # its settle was refused, or it noticed the lost lease and stores nothing
        return "no longer ours" in line or ("lease of task" in line and "lost" in line)

    # the zombie's loop runs again: its task is due, and its settle must be refused
    await victim.wait_output(lambda p: any(fenced(line) for line in p.stderr.splitlines()),
                             "the zombie to notice it was fenced out", timeout=10)
    assert victim.popen.poll() is None
    record = await chaos.record(result.id)
    assert (record["state"], record["attempt"], record["worker"]) == ("SUCCESS", "2", "survivor"), record
    assert record["result"] == '"survivor:2"'
    zombie_said = [line for line in victim.stderr.splitlines() if fenced(line)]
    assert zombie_said, victim.describe()  # it noticed it lost the lease (or its settle was refused)
    stats = await chaos.verify([result.id], min_runs=2, max_runs=2)
    report("01b zombie (SIGSTOP/SIGCONT)", zombie_log=repr(zombie_said[0][-90:]), **stats.__dict__)


# -- 2. SIGKILL after the side effect, before completion ----------------------------------------


@pytest.mark.timeout(60)
async def test_02_sigkill_after_side_effect_runs_twice_stores_once(chaos: Chaos) -> None:
    n = 20
    victim = chaos.worker("victim", concurrency=n)
    await chaos.ready(victim)
    app = chaos.app()
    results = [await app.send_task("chaos.slow_first" if i % 2 else "chaos.sync_slow_first", [i, 60])
               for i in range(n)]
    ids = [r.id for r in results]
    await chaos.wait_total_runs(ids, n, timeout=10)  # every side effect happened on the victim
    survivor = chaos.worker("survivor", concurrency=n)
    await chaos.ready(survivor)

    killed_at = await chaos.kill(victim)
    assert await chaos.results(results, timeout=20) == list(range(n))
    runs = await chaos.all_runs(ids)
    assert all([r.worker for r in rs] == ["victim", "survivor"] for rs in runs.values()), runs
    delays = [rs[1].t - killed_at for rs in runs.values()]
    stats = await chaos.verify(ids, values={r.id: i for i, r in enumerate(results)}, min_runs=2, max_runs=2)
    assert stats.runs == 2 * n and stats.publishes == n
    report("02 sigkill after side effect", max_redelivery_s=f"{max(delays):.2f}", **stats.__dict__)


# -- 3. SIGKILL between fetch and begin ---------------------------------------------------------


@pytest.mark.timeout(60)
async def test_03_sigkill_between_fetch_and_begin_runs_once_without_a_crash(chaos: Chaos) -> None:
    """The worker's XREADGROUP is answered by Redis (the entry is in its PEL) but the reply is held
    in a stalled proxy, so the worker never runs begin; then it is SIGKILLed. Exactly the state a
    kill between fetch and begin leaves: delivered, pending for a dead consumer, record PENDING."""
    with FaultProxy(chaos.broker.port) as proxy:
        victim = chaos.worker("victim", concurrency=4, broker_url=proxy.url, AIOCELERY_FETCH_BLOCK_S="5")
        await chaos.ready(victim)
        app = chaos.app()

        async def blocked_in_xreadgroup() -> bool:
            return any(c.get("cmd") == "xreadgroup" and "b" in str(c.get("flags", ""))
                       for c in await chaos.rds.client_list())

        result = None
        for _ in range(5):  # bounded: the send must land while the victim's read is blocked in Redis
            await wait_until(blocked_in_xreadgroup, "the victim blocked in XREADGROUP", timeout=10, interval=0.01)
            proxy.stall()
            result = await app.send_task("chaos.echo", [3])
            # no wait needed: Redis serves a reader blocked on the stream as part of the enqueue,
            # before it runs any other client's command, so XPENDING already shows the delivery
            summary = await chaos.rds.xpending(chaos.stream, "aiocelery")
            if summary["pending"] == 1:
                break
            proxy.resume()  # the read had just ended: let it run (it takes the task) and try again
            await result.get(timeout=10)
            result = None
        assert result is not None, "never caught the victim's read in flight"
        [owner] = summary["consumers"]
        assert owner["name"].decode().startswith(f"victim:{victim.pid}:")
        record = await chaos.record(result.id)
        assert (record["state"], record.get("attempt", "0")) == ("PENDING", "0"), record  # absent: 0

        killed_at = await chaos.kill(victim)
        proxy.resume()
    survivor = chaos.worker("survivor", concurrency=4)
    await chaos.ready(survivor)
    assert await result.get(timeout=LEASE_S + RECLAIM_S + 10) == 3
    [run] = await chaos.runs(result.id)
    record = await chaos.record(result.id)
    assert (run.worker, run.attempt, run.redelivered) == ("survivor", 1, True), run
    assert (record["attempt"], record["crashes"]) == ("1", "0"), record  # no crash counted
    stats = await chaos.verify([result.id], values={result.id: 3})
    report("03 sigkill between fetch and begin", redelivery_s=f"{run.t - killed_at:.2f}", **stats.__dict__)


# -- 4. SIGTERM with 100 in flight --------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_04_sigterm_finishes_short_tasks_and_hands_back_the_rest(chaos: Chaos) -> None:
    grace, lease = 1.5, 30.0
    env = {"AIOCELERY_LEASE_S": str(lease), "AIOCELERY_RECLAIM_INTERVAL_S": "5"}
    leaving = chaos.worker("leaving", concurrency=100, grace=grace, **env)
    await chaos.ready(leaving)
    app = chaos.app()
    # short: run until the test raises the "term" flag, then 0.3 s more; long: 4 s, more than the grace
    short = await chaos.send_many(app, "chaos.wait_flag", [[i, "term", 0.3, 30] for i in range(50)])
    long = await chaos.send_many(app, "chaos.sleep", [[100 + i, 4] for i in range(50)])
    ids = [r.id for r in short + long]
    await chaos.wait_total_runs(ids, 100, timeout=15)
    taker = chaos.worker("taker", concurrency=100, **env)
    await chaos.ready(taker)

    t_term = time.time()
    await chaos.raise_flag("term")
    leaving.signal(signal.SIGTERM)
    code = await leaving.wait(grace + 10)
    exit_s = time.time() - t_term
    assert code == 0, leaving.describe()
    assert exit_s <= grace + 1.0, f"exited {exit_s:.2f} s after SIGTERM (grace {grace})"
    assert "handed 50 unfinished task(s) back" in leaving.stderr, leaving.describe()

    values = await chaos.results(short + long, timeout=20)
    assert values == [*range(50), *range(100, 150)]
    short_runs = await chaos.all_runs([r.id for r in short])
    long_runs = await chaos.all_runs([r.id for r in long])
    assert all([(x.worker, x.attempt) for x in rs] == [("leaving", 1)] for rs in short_runs.values())
    assert all([(x.worker, x.attempt) for x in rs] == [("leaving", 1), ("taker", 2)] for rs in long_runs.values())
    pickup = max(rs[1].t for rs in long_runs.values()) - t_term
    assert pickup < grace + 2.0 < lease, f"released tasks started {pickup:.2f} s after SIGTERM"
    rows = await chaos.fields(ids, "crashes", "retries")
    assert {(c, r) for c, r in rows} <= {(b"0", None), (b"0", b"0")}, rows[:5]  # no crash, no retry counted
    s1 = await chaos.verify([r.id for r in short])
    s2 = await chaos.verify([r.id for r in long], min_runs=2, max_runs=2)
    report("04 sigterm with 100 in flight", exit_s=f"{exit_s:.2f}", pickup_s=f"{pickup:.2f}",
           short=s1.line(), long=s2.line())


@pytest.mark.timeout(60)
async def test_04b_second_sigterm_hands_back_at_once(chaos: Chaos) -> None:
    leaving = chaos.worker("leaving", concurrency=20, grace=30, AIOCELERY_LEASE_S="30")
    await chaos.ready(leaving)
    app = chaos.app()
    results = await chaos.send_many(app, "chaos.sleep", [[i, 20] for i in range(20)])
    ids = [r.id for r in results]
    await chaos.wait_total_runs(ids, 20, timeout=10)
    leaving.signal(signal.SIGTERM)
    await leaving.wait_output(lambda p: "SIGTERM: stopping" in p.stderr, "the first SIGTERM logged", timeout=5)
    t = time.monotonic()
    leaving.signal(signal.SIGTERM)
    assert await leaving.wait(10) == 0, leaving.describe()
    exit_s = time.monotonic() - t
    assert exit_s < 2.0, f"exited {exit_s:.2f} s after the second SIGTERM (grace 30 s)"
    assert "handed 20 unfinished task(s) back" in leaving.stderr, leaving.describe()
    await chaos.wait_states(ids, {"PENDING"}, timeout=5)
    assert await chaos.rds.xlen(chaos.stream) == 20 and await chaos.pending() == 0
    rows = await chaos.fields(ids, "crashes")
    assert {c for (c,) in rows} == {b"0"}
    report("04b second SIGTERM", exit_after_second_s=f"{exit_s:.2f}", released=20)


# -- 15. a task that kills its worker every time ------------------------------------------------


@pytest.mark.timeout(90)
async def test_15_poison_task_is_dead_after_max_crashes_others_continue(chaos: Chaos) -> None:
    max_crashes = 2
    env = {"AIOCELERY_MAX_CRASHES": str(max_crashes)}
    workers = await chaos.workers(2, concurrency=4, **env)
    supervisor = Supervisor(chaos, workers, max_restarts=8, concurrency=4, **env)
    supervisor.start()
    try:
        app = chaos.app()
        poison = await app.send_task("chaos.suicide")
        others = await chaos.send_many(app, "chaos.echo", [[i] for i in range(40)], chunk=5)
        with pytest.raises(TaskDead) as info:
            await poison.get(timeout=40)
        assert "chaos.suicide" in str(info.value) and "crashed its worker" in info.value.reason
        assert await chaos.results(others, timeout=30) == list(range(40))
        more = await chaos.send_many(app, "chaos.echo", [[i] for i in range(40, 60)])
        assert await chaos.results(more, timeout=20) == list(range(40, 60))
    finally:
        await supervisor.stop()
    poison_runs = await chaos.runs(poison.id)
    assert len(poison_runs) == max_crashes + 1, poison_runs
    assert [r.attempt for r in poison_runs] == list(range(1, max_crashes + 2))
    record = await chaos.record(poison.id)
    assert (record["state"], record["crashes"]) == ("DEAD", str(max_crashes + 1)), record
    [letter] = [d for d in await chaos.dead_letters() if d["id"] == poison.id]
    assert letter["reason"] == f"crashed its worker {max_crashes + 1} times (max_crashes {max_crashes})", letter
    assert letter["name"] == "chaos.suicide"
    ids = [r.id for r in others + more]
    stats = await chaos.verify(ids, max_runs=max_crashes + 1)
    dead = await chaos.verify([poison.id], state="DEAD", min_runs=max_crashes + 1, max_runs=max_crashes + 1)
    assert supervisor.restarts == max_crashes + 1
    report("15 poison task", restarts=supervisor.restarts, poison_runs=len(poison_runs), others=stats.line(),
           poison=dead.line())
