"""Seeing, from Redis, the moment the last result of a batch is stored.

An adapter describes how (``_common.zero_probe`` / ``keys_probe`` / ``field_probe``); the driver polls every
``interval_s`` and counts its own commands so that they can be left out of the commands per task.
For W7 (no worker), ``_common.count_check`` names a command that ``count`` reads once: how many
tasks wait in the queue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

EXISTS_BATCH = 500


class ProbeTimeout(TimeoutError):
    """The batch did not finish in time."""


@dataclass
class ProbeResult:
    done_at: float
    """time.monotonic() when the probe saw the batch complete."""
    calls: int
    """Commands the probe sent."""
    first_check_done: bool
    """True when the very first check already saw it complete (the time is then an upper bound)."""


def wait_done(client: redis.Redis, spec: dict[str, Any], timeout_s: float, interval_s: float = 0.005) -> ProbeResult:
    """Poll until the batch described by ``spec`` is complete; ProbeTimeout past ``timeout_s``."""
    if spec["kind"] == "zero":
        return _wait_zero(client, [str(a) for a in spec["command"]], timeout_s, interval_s)
    if spec["kind"] == "keys":
        return _wait_keys(client, [str(k) for k in spec["keys"]], timeout_s, interval_s)
    if spec["kind"] == "field":
        return _wait_field(client, [str(k) for k in spec["keys"]], str(spec["field"]),
                           frozenset(str(v) for v in spec["values"]), timeout_s, interval_s)
    raise ValueError(f"unknown probe kind {spec['kind']!r}")


def count(client: redis.Redis, command: list[str]) -> int:
    """The reply of a counting command (``_common.count_check``, e.g. ``XLEN`` of a queue's stream)."""
    return int(client.execute_command(*command))  # type: ignore[no-untyped-call]


def _wait_zero(client: redis.Redis, command: list[str], timeout_s: float, interval_s: float) -> ProbeResult:
    deadline = time.monotonic() + timeout_s
    calls = 0
    while True:
        calls += 1
        remaining = int(client.execute_command(*command))  # type: ignore[no-untyped-call]
        if remaining == 0:
            return ProbeResult(time.monotonic(), calls, first_check_done=calls == 1)
        if time.monotonic() > deadline:
            raise ProbeTimeout(f"{' '.join(command)} still {remaining} after {timeout_s:.0f} s")
        time.sleep(interval_s)


def _wait_keys(client: redis.Redis, keys: list[str], timeout_s: float, interval_s: float) -> ProbeResult:
    """Walk the keys in order, EXISTS on a batch at a time, waiting where one is still missing."""
    deadline = time.monotonic() + timeout_s
    calls, done, first = 0, 0, True
    while done < len(keys):
        batch = keys[done:done + EXISTS_BATCH]
        calls += 1
        if int(client.exists(*batch)) == len(batch):
            done += len(batch)
            continue
        first = False
        if time.monotonic() > deadline:
            raise ProbeTimeout(f"{len(keys) - done} or fewer of {len(keys)} results still missing "
                               f"after {timeout_s:.0f} s")
        time.sleep(interval_s)
    return ProbeResult(time.monotonic(), calls, first_check_done=first)


def _wait_field(client: redis.Redis, keys: list[str], field: str, values: frozenset[str], timeout_s: float,
                interval_s: float) -> ProbeResult:
    """Walk the hashes in order, ``HGET key field`` on a batch at a time (one pipeline), and where one
    does not hold one of ``values`` yet, poll that one alone (one ``HGET``) until it does: for task
    records, which exist from the send on."""
    deadline = time.monotonic() + timeout_s
    calls, done, first, size = 0, 0, True, EXISTS_BATCH
    while done < len(keys):
        batch = keys[done:done + size]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.hget(key, field)
        replies = pipe.execute()
        calls += len(batch)
        finished = next((i for i, v in enumerate(replies) if v not in values), len(batch))
        done += finished
        if finished == len(batch):
            size = EXISTS_BATCH
            continue
        first, size = False, 1
        if time.monotonic() > deadline:
            raise ProbeTimeout(f"{len(keys) - done} or fewer of {len(keys)} tasks not final ({field} not in "
                               f"{sorted(values)}) after {timeout_s:.0f} s")
        time.sleep(interval_s)
    return ProbeResult(time.monotonic(), calls, first_check_done=first)
