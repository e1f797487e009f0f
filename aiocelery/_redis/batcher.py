"""Coalesce concurrent calls of one Lua script into one pipelined round trip.

Callers ``await batcher.call(keys, args)`` as if they ran the script alone. A call made while
no other is queued or in flight runs at once in the caller's own task (one round trip, no
extra task or future: the one-by-one path). Calls made while one is in flight queue up, and
the queue is flushed as one pipeline on the next loop iteration by a task of its own (so a
caller's cancellation never fails the others): 100 consumers finishing together cost a round
trip or two, not 100.
Scripts are called by EVALSHA; a NOSCRIPT reply (Redis restarted) loads the script and retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aiocelery._redis.client import Client
from aiocelery._redis.scripts import Script

Call = tuple[list[str], list[Any], "asyncio.Future[Any]"]
Args = tuple[list[str], list[Any]]
U = TypeVar("U")


class ScriptBatcher:
    """Runs ``script`` for many concurrent callers in one pipeline per loop iteration.

    With ``merge``, the script takes any number of units (fixed KEYS and ARGV per unit, one
    reply per unit), and the calls of one iteration become a single script call (up to
    ``MERGE_MAX`` units each) instead of a pipeline of calls.

    With ``timeout_s``, each round trip (a lone call, a flushed batch, a ``run_many``) must end
    within it or raises ``TimeoutError``: one timer per round trip, not one per caller.
    Without it, the connection's socket timeout bounds the wait for the replies.
    """

    MERGE_MAX = 256

    def __init__(self, client: Client, script: Script, *, merge: bool = False, unit_keys: int = 1,
                 timeout_s: float | None = None, replicas: int = 0) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._replicas = replicas
        """Replicas that must acknowledge each round trip's writes (WAIT): see ``Client.run_scripts``."""
        self._script = script
        self._merge = merge
        self._unit_keys = unit_keys
        self._pending: list[Call] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._inline = 0  # lone calls in flight in their callers' tasks

    async def call(self, keys: list[str], args: list[Any]) -> Any:
        """Run the script with ``keys`` and ``args``; returns its reply or raises its error."""
        if not self._pending and not self._flushing and not self._inline:
            self._inline += 1
            try:  # a merged call of one unit is that unit's own call, and its reply a list of one
                (reply,) = await self._client.run_scripts(self._script, [(keys, args)], timeout_s=self._timeout_s,
                                                          replicas=self._replicas)
            finally:
                self._inline -= 1
            if isinstance(reply, Exception):
                raise reply
            return reply[0] if self._merge else reply
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        if len(self._pending) == 1:
            task = loop.create_task(self._flush())
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)
        return await future

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            replies = await self.run_many([(keys, args) for keys, args, _ in batch])
        except BaseException as exc:  # connection loss: every caller sees it and may retry
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError(str(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def run_many(self, batch: list[Args]) -> list[Any]:
        """Run every call in ``batch`` now, in one round trip (merged, or pipelined); one reply per
        call, error replies as exceptions in place."""
        if not self._merge:
            return await self._client.run_scripts(self._script, batch, timeout_s=self._timeout_s,
                                                  replicas=self._replicas)
        chunks = [batch[i:i + self.MERGE_MAX] for i in range(0, len(batch), self.MERGE_MAX)]
        return await self._run_merged([([k for keys, _ in c for k in keys], [a for _, args in c for a in args])
                                       for c in chunks])

    async def run_units(self, units: Sequence[U], fill: Callable[[U, list[Any], list[Any]], None]) -> list[Any]:
        """Like ``run_many`` for a merging batcher, with no list per unit: ``fill(unit, keys, args)``
        appends each unit's keys and arguments to its merged call's (the bulk-send path)."""
        calls: list[Args] = []
        for start in range(0, len(units), self.MERGE_MAX):
            keys: list[Any] = []
            args: list[Any] = []
            for unit in units[start:start + self.MERGE_MAX]:
                fill(unit, keys, args)
            calls.append((keys, args))
        return await self._run_merged(calls)

    async def _run_merged(self, calls: list[Args]) -> list[Any]:
        """One round trip of merged calls; their replies split into one per unit."""
        replies = await self._client.run_scripts(self._script, calls, timeout_s=self._timeout_s,
                                                 replicas=self._replicas)
        out: list[Any] = []
        for reply, (keys, _) in zip(replies, calls, strict=True):
            out += [reply] * (len(keys) // self._unit_keys) if isinstance(reply, Exception) else reply
        return out
