"""Shared fixtures: a real redis-server for the session, apps on memory:// and on Redis, and a
RabbitMQ vhost for the session (on the machine's RabbitMQ: ``make rabbitmq``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from aiocelery import App, Config

from . import rabbitmq, vhosts
from .redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole test session, on a free port."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session", autouse=True)
def _rabbitmq_vhosts() -> Iterator[None]:
    """Deletes the RabbitMQ vhosts the session's tests used (``vhosts.fresh_vhost``) at its end."""
    yield
    vhosts.close_pool()


@pytest.fixture
def amqp_broker_url() -> str:
    """``amqp://guest:guest@127.0.0.1:5672/<a vhost of this test's own>``; fails, never skips,
    when RabbitMQ does not answer (``make rabbitmq`` installs and starts it)."""
    return rabbitmq.amqp_url(vhosts.fresh_vhost())


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL."""
    return redis_server.url


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test uses, instead of FLUSHALL."""
    return f"t{uuid.uuid4().hex[:10]}"


def make_config(kind: str, redis_url: str, key_prefix: str, **changes: object) -> Config:
    """A Config for ``kind`` ("memory", "redis", or "amqp": then ``redis_url`` is the result
    backend and the broker a vhost of the test's own) with a per-test key prefix."""
    if kind == "amqp":
        changes.setdefault("broker", rabbitmq.amqp_url(vhosts.fresh_vhost()))
        return Config(result_backend=redis_url, key_prefix=key_prefix, **changes)  # type: ignore[arg-type]
    broker = "memory://" if kind == "memory" else redis_url
    return Config(broker=broker, key_prefix=key_prefix, **changes)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis", "amqp"])
def kind(request: pytest.FixtureRequest) -> str:
    """Runs a test once on memory://, once on the real Redis and once on RabbitMQ (with the Redis
    as result backend)."""
    return str(request.param)


@pytest.fixture
async def app(kind: str, redis_server: RedisServer, key_prefix: str) -> AsyncIterator[App]:
    """An App on memory://, on the session Redis or on RabbitMQ, closed after the test."""
    application = App(make_config(kind, redis_server.url, key_prefix, fetch_block_s=0.5))
    yield application
    await application.close()
