"""The keyword options of ``@app.task(...)``, checked and turned into a TaskOptions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from aiocelery.tasks.task import TaskOptions
from aiocelery.timing.rate import Rate
from aiocelery.timing.retry import Backoff, ExceptionTypes, RetryPolicy, exception_types


class TaskOptionArgs(TypedDict, total=False):
    """Every keyword ``@app.task(...)`` accepts."""

    name: str
    queue: str
    max_retries: int
    retry_backoff: Backoff
    retry_backoff_s: float
    retry_backoff_max_s: float
    retry_jitter: bool
    autoretry_for: ExceptionTypes
    dont_autoretry_for: ExceptionTypes
    time_limit_s: float
    soft_time_limit_s: float
    rate_limit: str
    rate_burst: int
    concurrency_key: str | Callable[..., str]
    concurrency_limit: int


def build_options(args: TaskOptionArgs) -> TaskOptions:
    """A TaskOptions from the decorator's keywords; ValueError/TypeError say which one is wrong."""
    for key in ("time_limit_s", "soft_time_limit_s"):
        value: Any = args.get(key)
        if value is not None and value <= 0:
            raise ValueError(f"{key} must be > 0, got {value}")
    policy = RetryPolicy(
        max_retries=args.get("max_retries", 3),
        backoff=args.get("retry_backoff", "exponential"),
        base_s=args.get("retry_backoff_s", 1.0),
        max_s=args.get("retry_backoff_max_s", 600.0),
        jitter=args.get("retry_jitter", True),
        autoretry_for=exception_types(args.get("autoretry_for")),
        dont_autoretry_for=exception_types(args.get("dont_autoretry_for")),
    )
    limit = args.get("concurrency_limit")
    if (limit is None) != (args.get("concurrency_key") is None):
        raise ValueError("concurrency_key and concurrency_limit go together")
    if limit is not None and limit < 1:
        raise ValueError(f"concurrency_limit must be >= 1, got {limit}")
    rate = args.get("rate_limit")
    return TaskOptions(
        name=args.get("name"),
        queue=args.get("queue"),
        max_retries=policy.max_retries,
        time_limit_s=args.get("time_limit_s"),
        soft_time_limit_s=args.get("soft_time_limit_s"),
        retry=policy,
        rate_limit=Rate.parse(rate, args.get("rate_burst")) if rate else None,
        concurrency_key=args.get("concurrency_key"),
        concurrency_limit=limit,
    )
