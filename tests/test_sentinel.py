"""Redis through Sentinel, on real topologies the tests start (a master, a replica, three
sentinels; ``tests/topologies.py``): clients and workers find the master, follow a failover by
themselves, and a write answered READONLY by a replica goes to the master."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest

from aiocelery import App, AsyncResult, Config, ConfigError, SendError
from aiocelery._redis.client import Client
from aiocelery._redis.connection import Target
from aiocelery._redis.errors import RedisConnectionError
from aiocelery._redis.sync import SyncClient

from .topologies import SentinelTopology


@pytest.fixture
def topology() -> Iterator[SentinelTopology]:
    """A master, a replica and three sentinels (1 s down-after), killed after the test."""
    with SentinelTopology() as started:
        yield started


def sentinel_target(topology: SentinelTopology) -> Target:
    target = Config(broker=topology.url()).broker_target
    assert target is not None and target.sentinels
    return target


async def test_a_client_finds_the_master_and_follows_a_failover(topology: SentinelTopology) -> None:
    client = Client(sentinel_target(topology), socket_timeout=2.0, connect_timeout=2.0)
    try:
        assert await client.call("SET", "k", "v1") == b"OK"
        old = topology.master_address()
        topology.kill_master()
        # a write with a deadline rides the failover out: connections fail, then find the new master
        await client.execute([b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv2\r\n"], timeout_s=30)
        new, took = await asyncio.to_thread(topology.wait_failover, old)
        assert new != old
        assert await client.call("GET", "k") == b"v2"
        print(f"failover: new master {new} answered after {took:.2f} s")
    finally:
        await client.aclose()


async def test_a_write_answered_readonly_is_sent_again_to_the_master(topology: SentinelTopology) -> None:
    # a connection to what is now a replica (as after a failover demoted it): READONLY drops that
    # connection, and the next one asks the sentinels, so the write lands on the master
    target = sentinel_target(topology)
    replica = topology.replica_servers()[0]
    stale = dataclasses.replace(target, host="127.0.0.1", port=replica.port, sentinels=())
    plain = Client(stale, attempts=2)
    try:
        with pytest.raises(RedisConnectionError, match="READONLY"):
            await plain.call("SET", "k", "v")  # no sentinels to ask: the error says why
    finally:
        await plain.aclose()
    client = Client(target)
    try:
        assert await client.call("SET", "k", "v") == b"OK"
        assert await client.call("ROLE") is not None
    finally:
        await client.aclose()


def test_the_lease_threads_blocking_client_follows_a_failover_too(topology: SentinelTopology) -> None:
    sync = SyncClient(sentinel_target(topology), timeout=2.0)
    try:
        assert sync.execute([b"*1\r\n$4\r\nPING\r\n"]) == [b"PONG"]
        old = topology.master_address()
        topology.kill_master()
        topology.wait_failover(old)
        with pytest.raises(RedisConnectionError):
            sync.execute([b"*1\r\n$4\r\nPING\r\n"])  # the socket to the killed master: no retries here
        assert sync.execute([b"*1\r\n$4\r\nPING\r\n"]) == [b"PONG"]  # the next call asks the sentinels
    finally:
        sync.close()


def test_no_sentinel_answering_is_a_connection_error_that_says_what_to_check() -> None:
    target = Target(sentinels=(("127.0.0.1", 1),), service="nobody")
    with pytest.raises(RedisConnectionError, match="no sentinel gave the address of master 'nobody'"):
        SyncClient(target, timeout=1.0).execute([b"*1\r\n$4\r\nPING\r\n"])


@pytest.mark.timeout(120)
async def test_a_worker_drains_through_a_failover(topology: SentinelTopology, key_prefix: str) -> None:
    config = Config(broker=topology.url(), key_prefix=key_prefix, send_timeout_s=30, lease_s=3,
                    fetch_block_s=0.5)
    async with App(config) as app:
        @app.task(name="double")
        async def double(x: int) -> int:
            return 2 * x

        async with app.worker(concurrency=20):
            results = [await double.delay(i) for i in range(300)]
            old = topology.master_address()
            topology.kill_master()
            results += [await double.delay(i) for i in range(300, 600)]  # sends wait out the failover
            _, took = await asyncio.to_thread(topology.wait_failover, old)
            values = [await r.get(timeout=60) for r in results[300:]]
        assert values == [2 * i for i in range(300, 600)]
        print(f"failover took {took:.2f} s")


async def test_durable_sends_wait_for_replicas_and_say_when_too_few_answer(topology: SentinelTopology,
                                                                          key_prefix: str) -> None:
    durable = Config(broker=topology.url(), key_prefix=key_prefix, min_replica_acks=1, send_timeout_s=2)
    async with App(durable) as app:
        sent = await app.send_task("any", task_id="durable-1")
        assert await sent.state() == "PENDING"
    async with App(durable.replace(min_replica_acks=2)) as app:  # the topology has one replica
        with pytest.raises(SendError, match=r"durable-2.*1 of the 2 replica\(s\)"):
            await app.send_task("any", task_id="durable-2")


def test_min_replica_acks_is_checked() -> None:
    with pytest.raises(ConfigError, match="min_replica_acks must be >= 0"):
        Config(min_replica_acks=-1)
    with pytest.raises(ConfigError, match="memory:// has none"):
        _ = App(Config(broker="memory://", min_replica_acks=1)).broker


@pytest.mark.timeout(120)
async def test_durable_mode_loses_no_acknowledged_task_in_a_failover(topology: SentinelTopology,
                                                                    key_prefix: str) -> None:
    # a client keeps sending while the master is killed. Every send that returned was on a replica,
    # so every one of them runs after the failover. Sends that raise SendError (no master yet, then
    # no replica until the killed node is back as one) are sent again by id, as the error says.
    config = Config(broker=topology.url(), key_prefix=key_prefix, send_timeout_s=5, lease_s=3, fetch_block_s=0.5,
                    min_replica_acks=1)
    async with App(config) as app:
        @app.task(name="double")
        async def double(x: int) -> int:
            return 2 * x

        async with app.worker(concurrency=20):
            acknowledged: list[AsyncResult[int]] = []
            refused = 0
            old = topology.master_address()

            async def heal() -> float:
                killed = await asyncio.to_thread(topology.kill_master)
                _, took = await asyncio.to_thread(topology.wait_failover, old)
                await asyncio.to_thread(topology.restart, killed, follow_current_master=True)
                return took

            healing: asyncio.Task[float] | None = None
            for i in range(1500):
                if i == 500:
                    healing = asyncio.create_task(heal())
                while True:
                    try:
                        acknowledged.append(await double.apply_async((i,), task_id=f"{key_prefix}-{i}"))
                        break
                    except SendError:
                        refused += 1
            assert healing is not None
            took = await healing
            values = [await r.get(timeout=60) for r in acknowledged]
        assert values == [2 * i for i in range(1500)]
        print(f"durable: 1,500 acknowledged sends, all run ({refused} sends refused and sent again); "
              f"failover took {took:.2f} s")
