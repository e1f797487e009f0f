"""The Sentinel topology harness (tests/topologies.py), checked with redis-py, the tests' independent
client: it starts, replicates, fails over, redis-py's Sentinel client follows, a killed node comes back
as a replica, and nothing is left running."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import redis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from . import topologies
from .topologies import HOST, SentinelTopology, TopologyError, client, role

sentinel_topology = topologies.sentinel_topology  # the fixture, without F811 on the test arguments


def test_topology_starts_and_replicates(sentinel_topology: SentinelTopology) -> None:
    topo = sentinel_topology
    ports = [port for _, port in topo.sentinel_addresses]
    assert len(ports) == 3 and len(set(ports)) == 3 and 6379 not in ports
    assert topo.master_name == "mymaster"
    assert topo.url() == f"redis+sentinel://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]},127.0.0.1:{ports[2]}/mymaster/0"
    assert topo.url(3, socket_timeout=0.5).endswith("/mymaster/3?socket_timeout=0.5")

    master = topo.master_server()
    assert topo.master_address() == (HOST, master.port) and master is topo.servers[0]
    assert role(master) == "master"
    [replica] = topo.replica_servers()
    assert replica is topo.servers[1]

    with client(master.port) as c:
        c.set("greeting", "hello")
    topo.wait_replicas_synced()
    assert topo.replica_offsets() == {(HOST, replica.port): topo.master_offset()}
    with client(replica.port) as c:
        assert c.get("greeting") == "hello"
        with pytest.raises(redis.ReadOnlyError):
            c.set("greeting", "not on a replica")

    # Every sentinel rewrote its own config file with what it learnt.
    for sentinel in topo.sentinels:
        assert sentinel.config_file is not None
        text = sentinel.config_file.read_text()
        assert "sentinel myid " in text and f"sentinel known-replica mymaster {HOST} {replica.port}" in text


def test_failover_elects_the_replica_and_redis_py_follows(sentinel_topology: SentinelTopology) -> None:
    topo = sentinel_topology
    sentinel = Sentinel(topo.sentinel_addresses, socket_timeout=1.0)
    master = sentinel.master_for(topo.master_name, socket_timeout=1.0, decode_responses=True)
    try:
        master.set("before", "1")
        topo.wait_replicas_synced()  # replication is asynchronous: only acknowledged writes survive
        old = topo.master_address()
        [replica] = topo.replica_servers()

        topo.kill_master()
        new, seconds = topo.wait_failover(old)
        print(f"failover: SIGKILL of the master -> new master answering ROLE master in {seconds:.2f} s")
        assert new == (HOST, replica.port) and role(replica) == "master"
        assert seconds < 15  # down-after 1 s, then ODOWN, vote and promotion: ~2-3 s here

        assert sentinel.discover_master(topo.master_name) == new
        master.set("after", "2")  # the same client object, now on the promoted replica
        assert master.get("before") == "1" and master.get("after") == "2"
        with client(replica.port) as c:
            assert c.get("after") == "2"
        assert topo.master_server() is replica and topo.replica_servers() == []
    finally:
        master.close()
        for s in sentinel.sentinels:
            s.close()


def test_killed_master_restarted_rejoins_as_replica(sentinel_topology: SentinelTopology) -> None:
    topo = sentinel_topology
    with client(topo.master_server().port) as c:
        c.set("kept", "yes")
    topo.wait_replicas_synced()
    old = topo.master_address()
    killed = topo.kill_master()
    assert not killed.running and role(killed) is None
    new, seconds = topo.wait_failover(old)
    print(f"failover: {seconds:.2f} s")

    topo.restart(killed)
    # Back with its own command line it is an empty, writable master, until a sentinel converts it.
    assert role(killed) == "master"
    rejoined = topo.wait_replica(killed, timeout=30)
    print(f"restarted old master: a replica of {new} again after {rejoined:.2f} s (+convert-to-slave)")
    assert killed in topo.replica_servers() and topo.master_address() == new
    with client(new[1]) as c:
        c.set("later", "too")
    topo.wait_replicas_synced()
    with client(killed.port) as c:
        assert c.get("kept") == "yes" and c.get("later") == "too"


async def test_async_use_and_restart_following_the_current_master(sentinel_topology: SentinelTopology) -> None:
    """From async code: the slow calls through asyncio.to_thread, redis-py's asyncio Sentinel client."""
    topo = sentinel_topology
    sentinel = AsyncSentinel(topo.sentinel_addresses, socket_timeout=1.0)
    master = sentinel.master_for(topo.master_name, socket_timeout=1.0, decode_responses=True)
    try:
        await master.set("k", "v")
        old = topo.master_address()
        killed = await asyncio.to_thread(topo.kill_master)
        new, seconds = await asyncio.to_thread(topo.wait_failover, old)
        print(f"failover (async test): {seconds:.2f} s")
        await master.set("k2", "v2")
        assert await sentinel.discover_master(topo.master_name) == new

        topo.restart(killed, follow_current_master=True)  # --replicaof the new master: no wait for a sentinel
        rejoined = await asyncio.to_thread(topo.wait_replica, killed, 10)
        print(f"restarted with --replicaof the new master: a healthy replica after {rejoined:.2f} s")
        assert rejoined < 8  # faster than the sentinel's +convert-to-slave (>= 8 s)
    finally:
        await master.aclose()
        for s in sentinel.sentinels:
            await s.aclose()


def test_start_failure_names_what_did_not_come_up_and_leaves_nothing() -> None:
    # A replica that cannot AUTH to its master never gets its link up.
    topo = SentinelTopology(server_args=["--masterauth", "wrong"], start_timeout=1)
    started = time.monotonic()
    with pytest.raises(TopologyError, match=r"replica\(s\) linked to the master: .*master_link_status:down"):
        topo.start()
    assert time.monotonic() - started < 5
    assert topo.servers and not any(s.running for s in [*topo.servers, *topo.sentinels])
    assert not topo.basedir.exists()


def test_close_leaves_no_process() -> None:
    with SentinelTopology(sentinels=1, replicas=0) as topo:
        pids = [s.proc.pid for s in [*topo.servers, *topo.sentinels] if s.proc is not None]
        assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not topo.basedir.exists()
