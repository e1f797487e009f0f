"""Load at high concurrency (docs/delivery.md, failure scenarios 22)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from .harness import Chaos, report


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.timeout(150)
async def test_22_ten_thousand_tasks_at_concurrency_1000(chaos: Chaos) -> None:
    n = 10_000
    [worker] = await chaos.workers(1, concurrency=1000, loglevel="warning")
    app = chaos.app()
    t = time.monotonic()
    results = await chaos.send_many(app, "chaos.echo", [[i] for i in range(n)], chunk=1000)
    sent_s = time.monotonic() - t
    assert await chaos.results(results, timeout=120, chunk=1000) == list(range(n))
    done_s = time.monotonic() - t
    peak_mb = rss_mb(worker.pid)
    ids = [r.id for r in results]
    stats = await chaos.verify(ids)

    worker.signal(signal.SIGTERM)
    assert await worker.wait(30) == 0, worker.describe()
    for bad in ("Error", "Traceback", "MaxConnections", "Too many connections"):
        assert bad not in worker.stderr, worker.describe()

    # after a graceful stop: task records (with a TTL), the empty stream and the epoch marker; any
    # other key must expire by itself (a worker's heartbeat record is retired at shutdown)
    leaks, no_ttl, expiring = [], [], []
    permanent = {chaos.stream, f"{chaos.prefix}:epoch"}
    async for raw in chaos.rds.scan_iter(match=f"{chaos.prefix}:*", count=2000):
        key = raw.decode()
        ttl = await chaos.rds.pttl(key)
        if key.startswith(f"{chaos.prefix}:task:"):
            if ttl <= 0:
                no_ttl.append(key)
        elif key in permanent:
            continue
        elif ttl > 0:
            expiring.append(key)
        else:
            leaks.append(key)
    assert not no_ttl, f"{len(no_ttl)} task records without a TTL, e.g. {no_ttl[:3]}"
    assert not leaks, f"keys left behind without a TTL: {leaks[:10]}"
    assert peak_mb < 1024, f"worker peak RSS {peak_mb:.0f} MiB"
    report("22 10k tasks at concurrency 1000", send_s=f"{sent_s:.1f}", all_done_s=f"{done_s:.1f}",
           worker_peak_rss_mb=f"{peak_mb:.0f}", other_expiring_keys=len(expiring), **stats.__dict__)
