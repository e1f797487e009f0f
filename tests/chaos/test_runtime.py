"""Tasks that misbehave inside a worker (docs/delivery.md, failure scenarios 20 and 21)."""

from __future__ import annotations

import signal
import time

import pytest

from aiocelery import TaskFailed

from .harness import Chaos, report

# -- 20. an async task that blocks the loop -----------------------------------------------------


@pytest.mark.timeout(60)
async def test_20_blocking_async_task_is_named_and_leases_hold(chaos: Chaos) -> None:
    lease, block = 2.0, 6.0  # the loop is blocked for 3 leases
    blocker_worker = chaos.worker("blocked", concurrency=4)
    await chaos.ready(blocker_worker)
    app = chaos.app()
    bystander = await app.send_task("chaos.sleep", [20, 1.0])  # its lease must hold through the block too
    await chaos.wait_runs(bystander.id, 1, timeout=10)
    blocker = await app.send_task("chaos.block_loop", [21, block])
    await chaos.wait_runs(blocker.id, 1, timeout=10)
    t = time.monotonic()
    thief = chaos.worker("thief", concurrency=4)  # reclaims every 0.5 s while the loop is blocked
    await chaos.ready(thief)
    thief_up_s = time.monotonic() - t
    assert thief_up_s < block - lease, "the would-be thief started too late to test anything"

    assert await blocker.get(timeout=20) == 21
    assert await bystander.get(timeout=10) == 20
    stderr = blocker_worker.stderr
    assert "event loop blocked" in stderr, blocker_worker.describe()
    assert f"chaos.block_loop[{blocker.id}]" in stderr, blocker_worker.describe()  # the watchdog names it
    assert "reclaiming" not in thief.stderr, thief.describe()
    stats = await chaos.verify([blocker.id, bystander.id])  # one run each: nobody took them over
    assert {r.worker for rs in (await chaos.all_runs([blocker.id, bystander.id])).values() for r in rs} == {"blocked"}
    report("20 async task blocks the loop", block_s=block, lease_s=lease, thief_up_after_s=f"{thief_up_s:.2f}",
           **stats.__dict__)


# -- 21. a thread task that never returns -------------------------------------------------------


@pytest.mark.timeout(60)
async def test_21_thread_task_that_never_returns(chaos: Chaos) -> None:
    grace = 1.0
    worker = chaos.worker("w", concurrency=4, grace=grace)
    await chaos.ready(worker)
    app = chaos.app()
    stuck = await app.send_task("chaos.forever")
    limited = await app.send_task("chaos.forever_limited")  # time_limit_s=1.5: abandoned, FAILURE
    await chaos.wait_runs(stuck.id, 1, timeout=10)
    others = await chaos.send_many(app, "chaos.echo", [[i] for i in range(30)])
    assert await chaos.results(others, timeout=15) == list(range(30))  # the worker goes on meanwhile
    with pytest.raises(TaskFailed) as info:
        await limited.get(timeout=15)
    assert info.value.exc_type == "TimeLimitExceeded", info.value
    more = await chaos.send_many(app, "chaos.echo", [[i] for i in range(30, 60)])
    assert await chaos.results(more, timeout=15) == list(range(30, 60))

    t = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = await worker.wait(grace + 10)
    exit_s = time.monotonic() - t
    assert code == 0, worker.describe()
    assert exit_s < grace + 2.0, f"exited {exit_s:.2f} s after SIGTERM"
    assert "abandoned" in worker.stderr, worker.describe()
    record = await chaos.record(stuck.id)
    assert (record["state"], record["crashes"]) == ("PENDING", "0"), record  # handed back, no crash
    assert await chaos.rds.xlen(chaos.stream) == 1 and await chaos.pending() == 0
    stats = await chaos.verify([r.id for r in others + more], drained=False)
    await chaos.verify([limited.id], state="FAILURE", drained=False)
    report("21 thread task never returns", exit_s=f"{exit_s:.2f}", **stats.__dict__)
