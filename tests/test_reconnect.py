"""The capped, jittered backoff of the reconnect loops: a pure policy with an injected random source."""

from __future__ import annotations

import random

from aiocelery.timing.reconnect import ReconnectDelay


def test_delays_grow_with_full_jitter_and_stay_capped() -> None:
    backoff = ReconnectDelay(base=0.1, cap=2.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(40)]
    ceilings = [min(2.0, 0.1 * 2**n) for n in range(40)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 2.0
    assert backoff.failures == 40


def test_reset_starts_over() -> None:
    backoff = ReconnectDelay(base=1.0, cap=100.0, rng=random.Random(1))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.failures == 0
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_same_seed_same_delays() -> None:
    a = ReconnectDelay(rng=random.Random(42))
    b = ReconnectDelay(rng=random.Random(42))
    assert [a.next_delay() for _ in range(10)] == [b.next_delay() for _ in range(10)]


def test_huge_failure_counts_do_not_overflow() -> None:
    backoff = ReconnectDelay(base=0.1, cap=5.0, rng=random.Random(3), failures=10_000)
    assert 2.5 <= backoff.next_delay() <= 5.0
