"""Delayed tasks under contention (docs/delivery.md, failure scenarios 12)."""

from __future__ import annotations

import time

import pytest

from .harness import Chaos, report


@pytest.mark.timeout(60)
async def test_12_many_workers_race_for_the_same_due_tasks(chaos: Chaos) -> None:
    n, countdown = 300, 1.5
    workers = await chaos.workers(4, concurrency=25)
    app = chaos.app()
    sent_at = time.time()
    results = await chaos.send_many(app, "chaos.echo", [[i] for i in range(n)], countdown=countdown)
    assert await chaos.rds.zcard(chaos.delayed) == n
    assert await chaos.results(results, timeout=20) == list(range(n))
    ids = [r.id for r in results]
    runs = await chaos.all_runs(ids)
    first = min(r.t for rs in runs.values() for r in rs)
    assert first >= sent_at + countdown - 0.05, f"a task ran {sent_at + countdown - first:.2f} s early"
    assert await chaos.entries_added() == n  # promoted exactly once each
    stats = await chaos.verify(ids, values={r.id: i for i, r in enumerate(results)})
    by_worker = sorted({r.worker for rs in runs.values() for r in rs})
    assert all(w.popen.poll() is None for w in workers)
    report("12 workers race for due tasks", workers=len(workers), ran_on=",".join(by_worker),
           last_run_after_due_s=f"{max(r.t for rs in runs.values() for r in rs) - sent_at - countdown:.2f}",
           **stats.__dict__)
