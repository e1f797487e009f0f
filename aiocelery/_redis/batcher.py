"""Coalesce concurrent calls of one Lua script into one pipelined round trip.

Callers ``await batcher.call(keys, args)`` as if they ran the script alone. Every call made
while the event loop runs one iteration joins the same pipeline, flushed on the next iteration:
a lone call is never delayed, and 100 consumers finishing together cost one round trip.
Scripts are called by EVALSHA; a NOSCRIPT reply (Redis restarted) loads the script and retries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from . import wire
from .client import Client

Call = tuple[list[str], list[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    """Runs ``script`` for many concurrent callers in one pipeline per loop iteration.

    With ``merge``, the script takes any number of units (fixed KEYS and ARGV per unit, one
    reply per unit), and the calls of one iteration become a single script call (up to
    ``MERGE_MAX`` units each) instead of a pipeline of calls.
    """

    MERGE_MAX = 256

    def __init__(self, client: Client, script: AsyncScript, *, merge: bool = False, unit_keys: int = 1) -> None:
        self._client = client
        self._script = script
        self._merge = merge
        self._unit_keys = unit_keys
        self._pending: list[Call] = []
        self._flushing: set[asyncio.Task[None]] = set()

    async def call(self, keys: list[str], args: list[Any]) -> Any:
        """Run the script with ``keys`` and ``args``; returns its reply or raises its error."""
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
            replies = await self._run(batch)
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

    async def _run(self, batch: list[Call]) -> list[Any]:
        if self._merge:
            chunks = [batch[i:i + self.MERGE_MAX] for i in range(0, len(batch), self.MERGE_MAX)]
            calls = [([k for keys, _, _ in c for k in keys], [a for _, args, _ in c for a in args]) for c in chunks]
        else:
            calls = [(keys, args) for keys, args, _ in batch]
        sha = self._script.sha
        replies = await wire.execute(self._client.connection_pool, [wire.evalsha(sha, k, a) for k, a in calls])
        if any(isinstance(r, NoScriptError) for r in replies):
            await self._client.script_load(self._script.script)
            replies = await wire.execute(self._client.connection_pool, [wire.evalsha(sha, k, a) for k, a in calls])
        if not self._merge:
            return replies
        out: list[Any] = []
        for reply, (keys, _) in zip(replies, calls, strict=True):
            out += [reply] * (len(keys) // self._unit_keys) if isinstance(reply, Exception) else list(reply)
        return out
