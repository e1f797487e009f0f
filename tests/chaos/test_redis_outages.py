"""The broker Redis goes away (docs/delivery.md, failure scenarios 5 and 6).

The broker restarts on the same port; with ``chaos_aof`` it reloads its AOF (``appendfsync
always``), with ``chaos`` it comes back empty.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aiocelery import ResultLost, ResultTimeout, SendError

from ..procs import Proc
from .harness import Chaos, report, wait_until


async def roundtrip(chaos: Chaos, start: int, n: int, timeout: float, *workers: Proc) -> tuple[list[str], float]:
    """Send ``n`` echo tasks and wait for them; returns their ids and how long it took."""
    app = chaos.app()
    t = time.monotonic()
    results = await chaos.send_many(app, "chaos.echo", [[i] for i in range(start, start + n)])
    try:
        assert await chaos.results(results, timeout=timeout, watch=workers) == list(range(start, start + n))
    except ResultTimeout as exc:
        raise AssertionError("\n".join([str(exc), *(w.describe() for w in workers)])) from None
    return [r.id for r in results], time.monotonic() - t


# -- 5. Redis restarted while the worker is idle ------------------------------------------------


@pytest.mark.timeout(60)
async def test_05a_redis_restarted_with_its_data_while_idle(chaos_aof: Chaos) -> None:
    chaos = chaos_aof
    [worker] = await chaos.workers(1, concurrency=4)
    before, _ = await roundtrip(chaos, 0, 10, 10, worker)

    chaos.broker.stop()  # graceful: the AOF is complete
    await asyncio.sleep(1.0)
    chaos.broker.start()
    await chaos.reconnect()
    after, took = await roundtrip(chaos, 10, 20, 15, worker)

    assert worker.popen.poll() is None, worker.describe()
    for alarm in ("DATA LOSS", "consumer group missing"):
        assert alarm not in worker.stderr, worker.describe()  # the data survived: no data-loss alarm
    fetch_failures = worker.stderr.count("fetch failed")
    assert fetch_failures < 20, f"{fetch_failures} fetch failures in a 1 s outage: spinning?\n{worker.describe()}"
    stats = await chaos.verify(before + after)
    report("05a restart with AOF while idle", first_batch_after_restart_s=f"{took:.2f}",
           fetch_failures=fetch_failures, **stats.__dict__)


@pytest.mark.timeout(60)
async def test_05b_redis_restarted_empty_while_idle(chaos: Chaos) -> None:
    [worker] = await chaos.workers(1, concurrency=4)
    await roundtrip(chaos, 0, 10, 10, worker)

    chaos.broker.stop(kill=True)
    await asyncio.sleep(4.0)  # long enough for the fetcher's backoff to exceed the 0.5 s reclaim interval
    chaos.broker.start()
    await chaos.reconnect()
    after, took = await roundtrip(chaos, 10, 20, 10, worker)

    assert worker.popen.poll() is None, worker.describe()
    assert "DATA LOSS" in worker.stderr or "consumer group missing" in worker.stderr, worker.describe()
    fetch_failures = worker.stderr.count("fetch failed")
    assert fetch_failures < 30, f"{fetch_failures} fetch failures in a 4 s outage: spinning?\n{worker.describe()}"
    # the tasks from before the restart are gone with the data; only the new ones are checked
    stats = await chaos.verify(after)
    report("05b restart empty while idle", first_batch_after_restart_s=f"{took:.2f}",
           fetch_failures=fetch_failures, **stats.__dict__)


@pytest.mark.timeout(60)
async def test_05c_waiter_of_a_task_lost_in_an_empty_restart_gets_result_lost(chaos: Chaos) -> None:
    """A get() waiting through the outage must end with ResultLost once Redis is back without the task."""
    app = chaos.app()
    waiting = await app.send_task("chaos.echo", [99], countdown=60)  # no worker: it stays PENDING
    waiter = asyncio.ensure_future(waiting.get(timeout=30))

    async def subscribed() -> bool:
        [(_, count)] = await chaos.rds.pubsub_numsub(f"{chaos.prefix}:done:{waiting.id}")
        return int(count) == 1

    await wait_until(subscribed, "the waiter subscribed", timeout=10)
    chaos.broker.stop(kill=True)
    await asyncio.sleep(3.0)  # spans a safety re-check of the waiter (1 s, then 2 s later)
    chaos.broker.start()
    t = time.monotonic()
    with pytest.raises(ResultLost):
        await waiter
    report("05c waiter after empty restart", lost_after_s=f"{time.monotonic() - t:.2f}")


# -- 6. Redis kill -9 while busy (AOF always) ---------------------------------------------------


@pytest.mark.timeout(90)
async def test_06_redis_kill9_while_busy_loses_nothing(chaos_aof: Chaos) -> None:
    chaos = chaos_aof
    lease = 5.0  # longer than the outage: nobody's lease should expire, so no stealing is expected
    workers = await chaos.workers(2, concurrency=10, AIOCELERY_LEASE_S=str(lease))
    app = chaos.app(send_timeout_s=2.0)
    # a backlog of 200 (about 1 s of work for 20 slots), then 200 more sent one by one during the kill
    accepted = await chaos.send_many(app, "chaos.sleep", [[i, 0.1] for i in range(200)])
    unknown: list[str] = []

    async def sender() -> None:
        for i in range(200, 400):
            try:
                accepted.append(await app.send_task("chaos.sleep", [i, 0.1], task_id=f"t6-{i}"))
            except SendError as exc:
                unknown.append(exc.task_id)  # maybe applied, maybe not: delay() did not return
            await asyncio.sleep(0.005)

    sending = asyncio.ensure_future(sender())
    await asyncio.sleep(0.4)
    in_flight = await chaos.pending()
    chaos.broker.stop(kill=True)
    killed = time.monotonic()
    await asyncio.sleep(1.0)
    chaos.broker.start()
    downtime = time.monotonic() - killed
    await chaos.reconnect()
    await sending

    ids = [r.id for r in accepted]
    await chaos.wait_states(ids, {"SUCCESS"}, timeout=40)
    drained_after = time.monotonic() - killed
    # a send that raised may still have been applied; then it must finish too, never hang half-done
    states = await chaos.states(unknown)
    applied = [i for i, s in states.items() if s]
    await chaos.wait_states(applied, {"SUCCESS"}, timeout=20)
    assert all(w.popen.poll() is None for w in workers), [w.describe() for w in workers]
    stats = await chaos.verify(ids + applied, max_runs=2)
    assert stats.duplicates <= in_flight, f"{stats.duplicates} tasks ran twice: stealing after the restart"
    rows = await chaos.fields(ids + applied, "crashes")
    crashed = sum(1 for (c,) in rows if int(c or 0))
    reclaims = sum(w.stderr.count("reclaiming") for w in workers)
    report("06 redis kill -9 while busy (AOF always)", accepted=len(accepted), send_errors=len(unknown),
           applied_despite_error=len(applied), in_flight_at_kill=in_flight, downtime_s=f"{downtime:.2f}",
           all_done_after_kill_s=f"{drained_after:.2f}", tasks_with_crash_counted=crashed,
           reclaim_log_lines=reclaims, **stats.__dict__)
