"""Shared fixtures: a real redis-server for the session, apps on memory:// and on Redis, and a
RabbitMQ vhost for the session (on the machine's RabbitMQ: ``make rabbitmq``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from aiocelery import App, Config

from . import rabbitmq
from .redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole test session, on a free port."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def rabbitmq_vhost() -> Iterator[str]:
    """A fresh vhost ``aiocelery-test-<hex>`` on the machine's RabbitMQ (127.0.0.1:5672), guest
    allowed everything, deleted at the end of the session. Fails, never skips, when RabbitMQ does
    not answer: ``make rabbitmq`` installs and starts it."""
    if not rabbitmq.answers():
        pytest.fail(rabbitmq.NOT_RUNNING, pytrace=False)
    try:
        vhost = rabbitmq.create_vhost("aiocelery-test")
    except rabbitmq.RabbitMQError as exc:
        pytest.fail(f"could not create a RabbitMQ vhost for the tests: {exc}", pytrace=False)
    yield vhost
    rabbitmq.delete_vhost(vhost)


@pytest.fixture(scope="session")
def amqp_url(rabbitmq_vhost: str) -> str:
    """``amqp://guest:guest@127.0.0.1:5672/<vhost>`` for the session's vhost (URL-quoted)."""
    return rabbitmq.amqp_url(rabbitmq_vhost)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL."""
    return redis_server.url


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test uses, instead of FLUSHALL."""
    return f"t{uuid.uuid4().hex[:10]}"


def make_config(kind: str, redis_url: str, key_prefix: str, **changes: object) -> Config:
    """A Config for ``kind`` ("memory" or "redis") with a per-test key prefix."""
    broker = "memory://" if kind == "memory" else redis_url
    return Config(broker=broker, key_prefix=key_prefix, **changes)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    """Runs a test once on memory:// and once on the real Redis."""
    return str(request.param)


@pytest.fixture
async def app(kind: str, redis_server: RedisServer, key_prefix: str) -> AsyncIterator[App]:
    """An App on memory:// or on the session Redis, closed after the test."""
    application = App(make_config(kind, redis_server.url, key_prefix, fetch_block_s=0.5))
    yield application
    await application.close()
