"""The benchmark's own redis-server (persistence off, a free port) and its CPU / command counters."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402

SHARED_PORT = 6379
IGNORED_COMMANDS = frozenset({"info"})
"""The driver's own INFO calls; the probe's calls are subtracted by count."""


@dataclass(frozen=True)
class Snapshot:
    """Redis counters at one moment."""

    cpu_s: float
    """used_cpu_user + used_cpu_sys of the server process."""
    calls: int
    """Commands executed (INFO commandstats, scripts' inner commands included), INFO excluded."""


class BenchRedis:
    """A throwaway redis-server that only the benchmark uses, so FLUSHALL between runs is safe."""

    def __init__(self) -> None:
        self.server = RedisServer(persistent=False)
        if self.server.port == SHARED_PORT:
            raise RuntimeError("refusing to use port 6379 (the shared Redis)")
        self.client: redis.Redis | None = None

    def __enter__(self) -> BenchRedis:
        self.server.start()
        self.client = redis.Redis(host="127.0.0.1", port=self.server.port, decode_responses=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def redis(self) -> redis.Redis:
        if self.client is None:
            raise RuntimeError("the benchmark's redis-server is not started")
        return self.client

    def flush(self) -> None:
        """Empty the server: only ever our own throwaway one."""
        assert self.server.proc is not None and self.server.port != SHARED_PORT
        self.redis.flushall()

    def version(self) -> str:
        info: dict[str, Any] = self.redis.info("server")
        return str(info["redis_version"])

    def snapshot(self) -> Snapshot:
        cpu: dict[str, Any] = self.redis.info("cpu")
        stats: dict[str, Any] = self.redis.info("commandstats")
        calls = sum(int(v["calls"]) for k, v in stats.items()
                    if k.removeprefix("cmdstat_").split("|")[0] not in IGNORED_COMMANDS)
        return Snapshot(cpu_s=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls=calls)
