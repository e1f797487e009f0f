"""The benchmark's RabbitMQ: a vhost of its own on the machine's server, reset before every run.

RabbitMQ runs once per machine (``make rabbitmq``; 127.0.0.1:5672, guest/guest), so the benchmark
does not start one: it creates vhost ``aiocelery-bench-<hex>`` with ``rabbitmqctl``, deletes and
recreates it before each run of a library on RabbitMQ (its queues, exchanges and messages go with it,
as Redis's FLUSHALL empties the benchmark's redis-server), and deletes it at the end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import rabbitmq  # noqa: E402

from .procstat import cpu_seconds  # noqa: E402


class BenchRabbitMQ:
    """A throwaway vhost on the machine's RabbitMQ that only the benchmark uses."""

    def __init__(self) -> None:
        self.vhost = ""
        """Set on entering: ``aiocelery-bench-<hex>``."""
        self.pid: int | None = None

    def __enter__(self) -> BenchRabbitMQ:
        if not rabbitmq.answers():
            raise RuntimeError(rabbitmq.NOT_RUNNING)
        self.vhost = rabbitmq.create_vhost("aiocelery-bench")
        self.pid = rabbitmq.server_pid()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.vhost:
            try:
                rabbitmq.delete_vhost(self.vhost)
            except rabbitmq.RabbitMQError as error:
                print(f"bench: could not delete RabbitMQ vhost {self.vhost}: {error}", file=sys.stderr)

    @property
    def url(self) -> str:
        """``amqp://guest:guest@127.0.0.1:5672/<vhost>``."""
        return rabbitmq.amqp_url(self.vhost)

    def reset(self) -> None:
        """Delete and recreate the vhost (same name): nothing of the last run is left (~1.2 s)."""
        rabbitmq.delete_vhost(self.vhost)
        rabbitmq.create_vhost(name=self.vhost)

    def queue_depth(self, queue: str, expected: int, wait_s: float = 5.0) -> int:
        """Messages in ``queue``; re-read for up to ``wait_s`` while short of ``expected`` (a publish
        without confirms may still be on its way from the channel to the queue)."""
        deadline = time.monotonic() + wait_s
        while True:
            depth = rabbitmq.queue_depth(self.vhost, queue) or 0
            if depth >= expected or time.monotonic() > deadline:
                return depth
            time.sleep(0.5)

    def cpu_s(self) -> float | None:
        """CPU seconds the RabbitMQ node (its Erlang VM and children) has used, or None if not found."""
        return cpu_seconds(self.pid) if self.pid is not None else None

    def version(self) -> str:
        try:
            return rabbitmq.rabbitmqctl("version").strip()
        except rabbitmq.RabbitMQError:
            return "?"
