"""Retries, delays, expiry, soft/hard limits, revoke, rate limits, concurrency caps, dedup."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections import Counter

import pytest

from aiocelery import App, Retry, SoftTimeLimitExceeded, TaskFailed, TaskRevoked, current_task
from aiocelery.timing.retry import RetryPolicy, decide, fibonacci

from .conftest import make_config
from .helpers import eventually, settled


def make_app(kind: str, redis_url: str, key_prefix: str, **changes: object) -> App:
    changes.setdefault("fetch_block_s", 0.2)
    return App(make_config(kind, redis_url, key_prefix, **changes))


# -- the pure policy -----------------------------------------------------------------------------


@pytest.mark.parametrize("backoff", ["fixed", "exponential", "fibonacci"])
def test_retry_delays_fall_inside_the_policy_bounds(backoff: str) -> None:
    policy = RetryPolicy(max_retries=8, backoff=backoff, base_s=0.5, max_s=10.0)  # type: ignore[arg-type]
    rng = random.Random(7)
    expected = {"fixed": [0.5] * 8, "exponential": [0.5, 1, 2, 4, 8, 10, 10, 10],
                "fibonacci": [0.5 * fibonacci(n + 1) for n in range(8)]}[backoff]
    for retries, bound in enumerate(expected):
        assert policy.delay_bound(retries) == pytest.approx(min(bound, 10.0))
        draws = [policy.delay(retries, rng) for _ in range(200)]
        assert all(0 <= d <= policy.delay_bound(retries) for d in draws)
        assert max(draws) > 0.5 * policy.delay_bound(retries)  # full jitter spreads over the range


def test_decide_respects_autoretry_and_max_retries() -> None:
    policy = RetryPolicy(max_retries=2, autoretry_for=(ValueError,), dont_autoretry_for=(UnicodeError,), jitter=False)
    assert decide(policy, 0, ValueError()).retry
    assert not decide(policy, 0, KeyError()).retry
    assert not decide(policy, 0, UnicodeError()).retry  # a ValueError, but excluded
    assert not decide(policy, 2, ValueError()).retry  # exhausted
    assert decide(policy, 1, KeyError(), explicit=True, explicit_countdown=3).countdown_s == 3


def test_bad_retry_options_are_refused() -> None:
    app = App(make_config("memory", "", "x"))
    with pytest.raises(ValueError, match="retry_backoff"):
        app.task(retry_backoff="linear")(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="exception classes"):
        app.task(autoretry_for=("ValueError",))(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="rate_limit"):
        app.task(rate_limit="fast")(lambda: None)


# -- retries on both brokers ---------------------------------------------------------------------


async def test_autoretry_then_success_shows_retry_state(kind: str, redis_url: str, key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)
    seen: list[tuple[int, int]] = []

    @app.task(name="flaky", autoretry_for=(ConnectionError,), max_retries=3, retry_backoff="fixed",
              retry_backoff_s=0.3, retry_jitter=False)
    async def flaky() -> str:
        ctx = current_task()
        assert ctx is not None
        seen.append((ctx.attempt, ctx.retries))
        if ctx.retries < 2:
            raise ConnectionError(f"try {ctx.retries}")
        return "ok"

    async with app, app.worker(concurrency=2):
        result = await flaky.delay()

        async def retrying() -> bool:
            return (await result.state()) == "RETRY"

        assert await eventually(retrying, timeout=5)
        record = await result.record()
        assert record.error is not None and record.error.type == "ConnectionError"
        assert await result.get(timeout=10) == "ok"
    assert seen == [(1, 0), (2, 1), (3, 2)]


async def test_exhausted_retries_fail_with_the_last_error_and_a_dead_letter(kind: str, redis_url: str,
                                                                             key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)
    runs: list[float] = []

    @app.task(name="always", autoretry_for=(ValueError,), max_retries=2, retry_backoff="exponential",
              retry_backoff_s=0.2, retry_backoff_max_s=1.0)
    def always() -> None:
        runs.append(time.monotonic())
        raise ValueError(f"boom {len(runs)}")

    async with app, app.worker(concurrency=1):
        result = await always.delay()
        with pytest.raises(TaskFailed) as info:
            await result.get(timeout=15)
        letters = await app.connections.operations.dead_letters(app.config.default_queue)
    assert info.value.exc_type == "ValueError" and info.value.exc_message == "boom 3"
    assert "raise ValueError" in info.value.remote_traceback
    assert len(runs) == 3
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert all(g <= bound + 0.5 for g, bound in zip(gaps, [0.2, 0.4], strict=True))  # within policy + slack
    assert [d.task_id for d in letters] == [result.id]
    assert "gave up after 2 retries" in letters[0].reason


async def test_explicit_retry_with_countdown(kind: str, redis_url: str, key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)
    starts: list[float] = []

    @app.task(name="later", max_retries=1)
    async def later() -> int:
        starts.append(time.monotonic())
        ctx = current_task()
        assert ctx is not None
        if ctx.retries == 0:
            raise Retry(countdown=0.5, exc=RuntimeError("not yet"))
        return ctx.retries

    async with app, app.worker(concurrency=1):
        assert await (await later.delay()).get(timeout=10) == 1
    assert starts[1] - starts[0] >= 0.45


async def test_explicit_retry_past_max_retries_fails_with_its_exc(kind: str, redis_url: str, key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)

    @app.task(name="stubborn", max_retries=0)
    async def stubborn() -> None:
        raise Retry(countdown=0, exc=RuntimeError("upstream down"))

    async with app, app.worker(concurrency=1):
        with pytest.raises(TaskFailed) as info:
            await (await stubborn.delay()).get(timeout=10)
    assert (info.value.exc_type, info.value.exc_message) == ("RuntimeError", "upstream down")


# -- expiry, dedup -------------------------------------------------------------------------------


async def test_expired_task_never_runs(kind: str, redis_url: str, key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)
    ran: list[int] = []

    @app.task(name="stale")
    async def stale() -> None:
        ran.append(1)

    async with app:
        result = await stale.apply_async(countdown=0.4, expires=0.2)
        async with app.worker(concurrency=1):
            with pytest.raises(TaskRevoked, match="expired"):
                await result.get(timeout=10)
    assert ran == []


async def test_dedup_key_returns_the_existing_task(kind: str, redis_url: str, key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)

    @app.task(name="report")
    async def report(day: str) -> str:
        return day

    async with app:
        first = await report.apply_async(("mon",), dedup_key="report-mon", dedup_ttl_s=30)
        second = await report.apply_async(("mon",), dedup_key="report-mon", dedup_ttl_s=30)
        other = await report.apply_async(("tue",), dedup_key="report-tue", dedup_ttl_s=30)
        assert second.id == first.id and other.id != first.id
        async with app.worker(concurrency=1):
            assert await first.get(timeout=10) == "mon"


# -- revoke --------------------------------------------------------------------------------------


async def test_revoke_queued_delayed_and_unknown(kind: str, redis_url: str, key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)
    ran: list[str] = []

    @app.task(name="victim")
    async def victim(tag: str) -> None:
        ran.append(tag)

    async with app:
        queued = await victim.delay("queued")
        delayed = await victim.apply_async(("delayed",), countdown=0.3)
        assert await queued.revoke() == "REVOKED"
        assert await app.revoke(delayed.id) == "REVOKED"
        with pytest.raises(TaskRevoked):
            await queued.get(timeout=1)
        async with app.worker(concurrency=2):  # a worker started later still skips them
            # it has taken both (the delayed one once due) and stored them without running them
            assert await eventually(lambda: settled(app))
        with pytest.raises(Exception, match="never sent"):
            await app.revoke("no-such-task")
    assert ran == []


async def test_revoke_terminate_cancels_a_running_async_task_fast(kind: str, redis_url: str,
                                                                   key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)
    cancelled_at: list[float] = []

    @app.task(name="sleeper")
    async def sleeper() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled_at.append(time.perf_counter())
            raise

    async with app, app.worker(concurrency=1):
        result = await sleeper.delay()

        async def started() -> bool:
            return (await result.state()) == "STARTED"

        assert await eventually(started, timeout=5)
        t0 = time.perf_counter()
        assert await result.revoke(terminate=True) == "STARTED"
        with pytest.raises(TaskRevoked, match="terminated"):
            await result.get(timeout=5)
    assert cancelled_at and cancelled_at[0] - t0 < 0.1, f"took {(cancelled_at[0] - t0) * 1000:.1f} ms"


async def test_revoke_terminate_sets_a_thread_tasks_cancel_token(kind: str, redis_url: str, key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)
    noticed = threading.Event()

    @app.task(name="cooperative")
    def cooperative() -> None:
        ctx = current_task()
        assert ctx is not None
        for _ in range(300):
            if ctx.cancel_requested:
                noticed.set()
                return
            time.sleep(0.01)

    async with app, app.worker(concurrency=1):
        result = await cooperative.delay()

        async def started() -> bool:
            return (await result.state()) == "STARTED"

        assert await eventually(started, timeout=5)
        await result.revoke(terminate=True)
        with pytest.raises(TaskRevoked):
            await result.get(timeout=5)
        assert await asyncio.to_thread(noticed.wait, 3)


# -- time limits ----------------------------------------------------------------------------------


async def test_soft_time_limit_is_raised_inside_async_and_thread_tasks(kind: str, redis_url: str,
                                                                        key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)

    @app.task(name="soft_async", soft_time_limit_s=0.2)
    async def soft_async() -> str:
        try:
            await asyncio.sleep(5)
        except SoftTimeLimitExceeded:
            await asyncio.sleep(0.01)  # cleanup may still await
            return "cleaned up"
        return "slept"

    @app.task(name="soft_thread", soft_time_limit_s=0.2)
    def soft_thread() -> str:
        try:
            for _ in range(500):
                time.sleep(0.01)
        except SoftTimeLimitExceeded:
            return "cleaned up"
        return "slept"

    async with app, app.worker(concurrency=2):
        assert await (await soft_async.delay()).get(timeout=10) == "cleaned up"
        assert await (await soft_thread.delay()).get(timeout=10) == "cleaned up"


# -- cluster-wide limits --------------------------------------------------------------------------


async def test_rate_limit_across_workers(kind: str, redis_url: str, key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)
    other = App(app.config) if kind == "redis" else app
    starts: list[float] = []

    @app.task(name="limited", rate_limit="20/s")
    async def limited(i: int) -> int:
        starts.append(time.monotonic())
        return i

    if other is not app:
        other.task(name="limited", rate_limit="20/s")(limited.fn)
    async with app, other, app.worker(concurrency=10), other.worker(concurrency=10):
        results = [await limited.delay(i) for i in range(40)]
        assert [await r.get(timeout=20) for r in results] == list(range(40))
    starts.sort()
    span = starts[-1] - starts[0]
    assert span >= 39 / 20 * 0.9  # 40 starts at 20/s need ~1.95 s
    for i in range(len(starts)):  # never more than 20 (+ burst 2) in any one-second window
        assert sum(1 for s in starts[i:] if s - starts[i] < 1.0) <= 22  # burst: a tenth of the rate


async def test_concurrency_cap_per_key(kind: str, redis_url: str, key_prefix: str) -> None:
    app = make_app(kind, redis_url, key_prefix)
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    @app.task(name="per_tenant", concurrency_key="tenant", concurrency_limit=2)
    async def per_tenant(tenant: str, i: int) -> int:
        running[tenant] += 1
        peak[tenant] = max(peak[tenant], running[tenant])
        await asyncio.sleep(0.1)
        running[tenant] -= 1
        return i

    async with app, app.worker(concurrency=10):
        results = [await per_tenant.delay(t, i) for i in range(6) for t in ("a", "b")]
        assert sorted([await r.get(timeout=20) for r in results]) == sorted(list(range(6)) * 2)
    assert peak == Counter({"a": 2, "b": 2})


async def test_a_capped_run_longer_than_its_slot_ttl_keeps_its_slot(kind: str, redis_url: str, key_prefix: str) -> None:
    # A slot's deadline (3 x lease_s: 1.2 s here) is there to free the slot of a worker that
    # died. A run that lasts longer renews it, so the second task under the same key waits for
    # the first to end instead of starting once the first one's deadline has passed.
    app = make_app(kind, redis_url, key_prefix, lease_s=0.4)
    spans: list[tuple[float, float]] = []

    @app.task(name="long_capped", concurrency_key="key", concurrency_limit=1)
    async def long_capped(key: str, i: int) -> int:
        start = time.monotonic()
        await asyncio.sleep(2.5)
        spans.append((start, time.monotonic()))
        return i

    async with app, app.worker(concurrency=4):
        first = await long_capped.delay("k", 1)
        second = await long_capped.delay("k", 2)
        assert await first.get(timeout=20) == 1
        assert await second.get(timeout=20) == 2
    (_, end_a), (start_b, _) = sorted(spans)
    assert start_b >= end_a, f"the second run started {end_a - start_b:.2f} s before the first ended"


# -- many workers, one due time ---------------------------------------------------------------------


async def test_twenty_workers_racing_for_due_tasks_run_each_once(redis_url: str, key_prefix: str) -> None:
    apps = [make_app("redis", redis_url, key_prefix) for _ in range(20)]
    runs: Counter[int] = Counter()

    async def job(i: int) -> int:
        runs[i] += 1
        return i

    for a in apps:
        a.task(name="due")(job)
    client = apps[0]
    eta_s = 1.0
    results = await client.send_many([client.registry["due"].s(i).set(countdown=eta_s) for i in range(1000)])
    workers = [a.worker(concurrency=50) for a in apps]
    try:
        for w in workers:
            await w.__aenter__()
        values = await asyncio.gather(*(r.get(timeout=30) for r in results))
    finally:
        for w in workers:
            await w.__aexit__(None, None, None)
        for a in apps:
            await a.close()
    assert values == list(range(1000))
    assert set(runs.values()) == {1} and len(runs) == 1000
