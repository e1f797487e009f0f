"""The broker Redis goes away (RELIABILITY.md section 8, scenarios 5 and 6).

The broker restarts on the same port; with ``chaos_aof`` it reloads its AOF (``appendfsync
always``), with ``chaos`` it comes back empty.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aiocelery import AsyncResult, ResultLost, ResultTimeout, SendError

from ..procs import Proc
from .harness import Chaos, report


async def roundtrip(chaos: Chaos, start: int, n: int, timeout: float, *workers: Proc) -> tuple[list[str], float]:
    """Send ``n`` echo tasks and wait for them; returns their ids and how long it took."""
    app = chaos.app()
    t = time.monotonic()
    results = await chaos.send_many(app, "chaos.echo", [[i] for i in range(start, start + n)])
    try:
        assert await chaos.results(results, timeout=timeout) == list(range(start, start + n))
    except ResultTimeout as exc:
        raise AssertionError("\n".join([str(exc), *(w.describe() for w in workers)])) from None
    return [r.id for r in results], time.monotonic() - t


# -- 5. Redis restarted while the worker is idle ------------------------------------------------


@pytest.mark.timeout(60)
async def test_05a_redis_restarted_with_its_data_while_idle(chaos_aof: Chaos) -> None:
    chaos = chaos_aof
    [worker] = await chaos.workers(1, concurrency=4)
    before, _ = await roundtrip(chaos, 0, 10, timeout=10)

    chaos.broker.stop()  # graceful: the AOF is complete
    await asyncio.sleep(1.0)
    chaos.broker.start()
    after, took = await roundtrip(chaos, 10, 20, 15, worker)

    assert worker.popen.poll() is None, worker.describe()
    assert "consumer group missing" not in worker.stderr  # the data survived: no data-loss alarm
    fetch_failures = worker.stderr.count("fetch failed")
    assert fetch_failures < 20, f"{fetch_failures} fetch failures in a 1 s outage: spinning?\n{worker.describe()}"
    stats = await chaos.verify(before + after)
    report("05a restart with AOF while idle", first_batch_after_restart_s=f"{took:.2f}",
           fetch_failures=fetch_failures, **stats.__dict__)


@pytest.mark.timeout(60)
async def test_05b_redis_restarted_empty_while_idle(chaos: Chaos) -> None:
    [worker] = await chaos.workers(1, concurrency=4)
    before, _ = await roundtrip(chaos, 0, 10, timeout=10)
    app = chaos.app()
    waiting = await app.send_task("chaos.echo", [99], countdown=60)  # still delayed when Redis loses it
    waiter = asyncio.ensure_future(waiting.get(timeout=30))
    await asyncio.sleep(0.3)

    chaos.broker.stop(kill=True)
    await asyncio.sleep(2.0)
    chaos.broker.start()
    t = time.monotonic()
    with pytest.raises(ResultLost):  # the waiter learns its task is gone, instead of hanging
        await waiter
    lost_after_s = time.monotonic() - t
    after, took = await roundtrip(chaos, 10, 20, 15, worker)

    assert worker.popen.poll() is None, worker.describe()
    assert "consumer group missing" in worker.stderr, worker.describe()  # the alarm, and the group is back
    fetch_failures = worker.stderr.count("fetch failed")
    assert fetch_failures < 30, f"{fetch_failures} fetch failures in a 2 s outage: spinning?\n{worker.describe()}"
    # the tasks from before the restart are gone with the data; only the new ones are checked
    stats = await chaos.verify(after)
    report("05b restart empty while idle", waiter_lost_after_s=f"{lost_after_s:.2f}",
           first_batch_after_restart_s=f"{took:.2f}", fetch_failures=fetch_failures, **stats.__dict__)


# -- 6. Redis kill -9 while busy (AOF always) ---------------------------------------------------


@pytest.mark.timeout(90)
async def test_06_redis_kill9_while_busy_loses_nothing(chaos_aof: Chaos) -> None:
    chaos = chaos_aof
    lease = 5.0  # longer than the outage: nobody's lease should expire, so no stealing is expected
    workers = await chaos.workers(2, concurrency=10, AIOCELERY_LEASE_S=str(lease))
    app = chaos.app(send_timeout_s=2.0)
    accepted: list[AsyncResult[int]] = []
    unknown: list[str] = []

    async def sender() -> None:
        for i in range(300):
            try:
                accepted.append(await app.send_task("chaos.sleep", [i, 0.05], task_id=f"t6-{i}"))
            except SendError as exc:
                unknown.append(exc.task_id)  # maybe applied, maybe not: delay() did not return
            await asyncio.sleep(0.01)

    sending = asyncio.ensure_future(sender())
    await asyncio.sleep(1.0)
    in_flight = int((await chaos.rds.xpending(chaos.stream, "aiocelery"))["pending"])
    chaos.broker.stop(kill=True)
    killed = time.monotonic()
    await asyncio.sleep(1.0)
    chaos.broker.start()
    await sending
    restarted_after = time.monotonic() - killed

    ids = [r.id for r in accepted]
    await chaos.wait_states(ids, {"SUCCESS"}, timeout=40)
    # a send that raised may still have been applied; then it must finish too, never hang half-done
    states = await chaos.states(unknown)
    applied = [i for i, s in states.items() if s]
    await chaos.wait_states(applied, {"SUCCESS"}, timeout=20)
    assert all(w.popen.poll() is None for w in workers), [w.describe() for w in workers]
    stats = await chaos.verify(ids + applied, max_runs=2)
    assert stats.duplicates <= in_flight + 20, "mass stealing after the restart"
    rows = await chaos.fields(ids + applied, "crashes")
    spurious = sum(1 for (c,) in rows if int(c or 0))
    report("06 redis kill -9 while busy (AOF always)", accepted=len(accepted), send_errors=len(unknown),
           applied_despite_error=len(applied), in_flight_at_kill=in_flight,
           outage_s=f"{restarted_after:.2f}", tasks_with_crash_counted=spurious, **stats.__dict__)
