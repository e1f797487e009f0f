"""A worker's presence: heartbeat records in Redis, answers to control messages, readiness.

Every ``interval_s`` the worker writes who it is, what it runs and whether it is ready; the
record expires after three missed heartbeats, so dead workers disappear by themselves.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiocelery._version import __version__
from aiocelery.brokers.operations import Operations

if TYPE_CHECKING:
    from aiocelery.worker.worker import Worker

HEARTBEAT_S = 5.0


class Presence:
    """Heartbeats and control for one worker."""

    def __init__(self, worker: Worker, operations: Operations, interval_s: float = HEARTBEAT_S) -> None:
        self._worker = worker
        self._operations = operations
        self._interval = interval_s
        self._started = datetime.now(UTC).isoformat(timespec="seconds")

    def info(self) -> dict[str, Any]:
        """The heartbeat record."""
        w = self._worker
        return {
            "name": w.name, "id": w.consumer_name, "host": socket.gethostname(), "pid": os.getpid(),
            "queues": w.queues, "concurrency": w.concurrency, "version": __version__, "started": self._started,
            "processed": w.processed, "failed": w.failed, "ready": w.ready, "heartbeat": time.time(),
            "registered": sorted(w.app.registry), "active": w.active(),
        }

    async def run(self) -> None:
        """Announce now and every interval until cancelled; retire on the way out."""
        try:
            while True:
                await self._operations.announce(self._worker.consumer_name, self.info(), 3 * self._interval)
                await asyncio.sleep(self._interval)
        finally:
            await asyncio.shield(self._operations.retire(self._worker.consumer_name))

    def on_command(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Answer ``ping``; obey ``shutdown``; ignore messages for other workers."""
        w = self._worker
        target = message.get("worker")
        if target and target not in (w.name, w.consumer_name):
            return None
        command = message.get("command")
        if command == "ping":
            return {"worker": w.name, "id": w.consumer_name, "ready": w.ready, "reply": "pong"}
        if command == "shutdown":
            w.stop()
            return {"worker": w.name, "id": w.consumer_name, "reply": "shutting down"}
        return {"worker": w.name, "id": w.consumer_name, "error": f"unknown command {command!r}"}


