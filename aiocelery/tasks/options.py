"""The keyword options of ``@app.task(...)``, checked and turned into a TaskOptions."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
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


def check_option_names(args: Mapping[str, object], where: str) -> None:
    """Refuse keywords ``@app.task`` does not know, naming the nearest valid one: a typo such as
    ``max_retry=5`` would otherwise register the task and drop the option."""
    known = TaskOptionArgs.__annotations__
    for key in args:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise TypeError(f"{where}: unknown task option {key!r}{hint} Valid options: {', '.join(known)}")


def build_options(args: TaskOptionArgs, where: str = "@app.task") -> TaskOptions:
    """A TaskOptions from the decorator's keywords; TypeError for an unknown one, ValueError/TypeError
    say which value is wrong."""
    check_option_names(args, where)
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
