"""Fixtures of the chaos suite: a ledger Redis for the session, a fresh broker Redis per test (with
``chaos_amqp``: a fresh RabbitMQ vhost as the broker, that Redis as the result backend)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .. import vhosts
from ..redis_server import RedisServer
from ..topologies import SentinelTopology
from .harness import Chaos

CHAOS_DIR = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``chaos``: ``pytest -m "not chaos"`` is the quick loop."""
    for item in items:
        if CHAOS_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.chaos)


@pytest.fixture(scope="session")
def ledger_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The ledger: a Redis no scenario ever faults, where every task execution records itself."""
    workdir = tmp_path_factory.mktemp("ledger")
    server = RedisServer(workdir=workdir).start()
    yield server
    server.stop()


async def _chaos(tmp_path: Path, ledger: RedisServer, *, persistent: bool,
                 amqp: bool = False, sentinel: SentinelTopology | None = None) -> AsyncIterator[Chaos]:
    workdir = tmp_path / "broker"
    workdir.mkdir()
    vhost = vhosts.fresh_vhost() if amqp else None  # fails the test, never skips, without RabbitMQ
    if sentinel is not None:
        broker = sentinel.servers[0]  # the first master; the topology owns (and kills) its nodes
    else:
        broker = RedisServer(persistent=persistent, workdir=workdir).start()
    chaos = Chaos(tmp_path, broker, ledger.url, amqp_vhost=vhost, sentinel=sentinel)
    try:
        await chaos.open()
        yield chaos
    finally:
        try:
            await chaos.close()
        finally:
            if sentinel is not None:
                sentinel.close()
            else:
                broker.stop(kill=True)
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def chaos(tmp_path: Path, ledger_server: RedisServer) -> AsyncIterator[Chaos]:
    """A scenario on a fresh broker Redis without persistence (a restart empties it)."""
    async for c in _chaos(tmp_path, ledger_server, persistent=False):
        yield c


@pytest.fixture
async def chaos_aof(tmp_path: Path, ledger_server: RedisServer) -> AsyncIterator[Chaos]:
    """A scenario on a fresh broker Redis with AOF ``appendfsync always`` (survives kill -9)."""
    async for c in _chaos(tmp_path, ledger_server, persistent=True):
        yield c


@pytest.fixture
async def chaos_amqp(tmp_path: Path, ledger_server: RedisServer) -> AsyncIterator[Chaos]:
    """A scenario on RabbitMQ: a fresh vhost as the broker, a fresh Redis without persistence as the
    result backend (records, results, delayed set, dead letters)."""
    async for c in _chaos(tmp_path, ledger_server, persistent=False, amqp=True):
        yield c


@pytest.fixture
async def chaos_sentinel(tmp_path: Path, ledger_server: RedisServer) -> AsyncIterator[Chaos]:
    """A scenario on a Sentinel topology (``tests/topologies.py``): a master, a replica and three
    sentinels (1 s down-after), no persistence; ``chaos.sentinel`` kills and restarts its nodes."""
    topology = SentinelTopology(replicas=1, sentinels=3)
    await asyncio.to_thread(topology.start)
    async for c in _chaos(tmp_path, ledger_server, persistent=False, sentinel=topology):
        yield c
