"""Real Redis Sentinel topologies on free loopback ports: a master, N replicas, M sentinels.

Built on ``redis_server.RedisServer`` (one child process each, own workdir, ``stop(kill=True)``
/``start()`` for outages). The API is synchronous (redis-py's sync client is the tests'
independent view); from an async test call the slow parts through ``asyncio.to_thread``::

    with SentinelTopology(replicas=1, sentinels=3) as topo:
        old = topo.master_address()
        topo.kill_master()
        new, seconds = topo.wait_failover(old)       # sentinels agree on `new`, and it says ROLE master
        topo.restart(topo.server_at(old))             # comes back as an empty *master* ...
        topo.wait_replica(topo.server_at(old))        # ... until a sentinel sends it REPLICAOF (~10 s)

What Sentinel 7.0.15 does here (the quirks the harness is shaped around):

* Sentinels rewrite their config file (``myid``, ``known-replica``, ``known-sentinel``,
  ``current-epoch``, and after a failover ``sentinel monitor`` names the new master): each one
  has a writable file of its own in its workdir, given by absolute path.
* Replicas are discovered through the master's ``INFO``, polled every 10 s (replicas are polled
  every 1 s only while their master is down), so replicas are started and linked *before* the
  sentinels: the sentinels' first ``INFO`` already lists them. Sentinels discover each other through
  ``__sentinel__:hello`` every 2 s.
* ``resolve-hostnames no`` / ``announce-hostnames no`` and numeric 127.0.0.1 everywhere: the
  addresses sentinels hand out are the ones the master sees its replicas connect from, which
  on loopback is 127.0.0.1, so no ``announce-ip``/``replica-announce-ip`` is needed.
* A killed node brought back with its own command line (the old master: no ``--replicaof``)
  starts as an *empty, writable master* and stays one until a sentinel converts it
  (``+convert-to-slave``): Sentinel waits for the node to have been up and reporting the wrong
  role for 8 s (4 x the 2 s publish period), and only looks at it on its ``INFO`` (10 s period).
  (A restarted replica still pointing at the old master is fixed the same way, ``+fix-slave-config``,
  once that has lasted ``failover-timeout``: read in sentinel.c, not exercised here.)
  Clients that go through the sentinels never see it; a client with its address does. Measured
  here: ~10 s from restart to a linked replica; ``restart(..., follow_current_master=True)``
  (``--replicaof`` the new master) takes ~1 s instead.
* Measured failover, SIGKILL to the new master answering ``ROLE`` master, with
  ``down_after_ms=1000``: ~2.3 s (SDOWN 1 s, ODOWN, vote, ``REPLICAOF NO ONE``, +switch-master).
* A sentinel that voted for another leader will not start a failover of that master itself for
  2 x ``failover-timeout`` (it logs "Next failover delay"): with the 5 s default here, a failover
  that does not complete is retried after 10 s.
* Data nodes get ``--repl-diskless-sync-delay 0``: the default 5 s wait for more replicas before a
  diskless full sync would make every (re)sync take 5 s more.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import pytest
import redis

from .redis_server import RedisServer

HOST = "127.0.0.1"
Address = tuple[str, int]


class TopologyError(RuntimeError):
    """Something the topology waited for did not happen in time; the message says what."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1 (all bound at once, so no duplicates)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def client(port: int, timeout: float = 1.0) -> redis.Redis:
    """A short-lived redis-py client (use it in a ``with``)."""
    return redis.Redis(HOST, port, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True)


def role(server: RedisServer) -> str | None:
    """``"master"``, ``"slave"`` (``ROLE``), or ``None`` when the node is down or does not answer."""
    if not server.running:
        return None
    try:
        with client(server.port) as c:
            return str(c.execute_command("ROLE")[0])
    except redis.RedisError:
        return None


class SentinelTopology:
    """A master, ``replicas`` replicas and ``sentinels`` sentinels on free loopback ports.

    ``start()`` returns once every replica's link is up and every sentinel knows the master, the
    ``replicas`` replicas and the ``sentinels - 1`` other sentinels; ``close()`` kills everything
    and removes the workdirs (also at interpreter exit, should a test forget).
    """

    def __init__(self, master_name: str = "mymaster", replicas: int = 1, sentinels: int = 3,
                 persistent: bool = False, down_after_ms: int = 1000, failover_timeout_ms: int = 5000,
                 quorum: int | None = None, server_args: Sequence[str] = (), start_timeout: float = 20.0) -> None:
        if sentinels < 1 or replicas < 0:
            raise ValueError("a topology needs at least one sentinel and zero or more replicas")
        self._master_name = master_name
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.persistent = persistent
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.quorum = quorum if quorum is not None else min(2, sentinels)
        self.server_args = list(server_args)  # for every data node, e.g. ["--min-replicas-to-write", "1"]
        self.start_timeout = start_timeout
        self.basedir = Path(tempfile.mkdtemp(prefix="aiocelery-sentinel-"))
        self.servers: list[RedisServer] = []  # the data nodes; servers[0] is the first master
        self.sentinels: list[RedisServer] = []
        self._killed_at: float | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SentinelTopology:
        atexit.register(self.close)
        try:
            ports = free_ports(1 + self.replica_count + self.sentinel_count)
            master = self._data_node("master0", ports[0], []).start()
            for i in range(self.replica_count):
                self._data_node(f"replica{i}", ports[1 + i], ["--replicaof", HOST, str(master.port)]).start()
            self._wait(f"{self.replica_count} replica(s) linked to the master", self._replicas_problem,
                       self.start_timeout)
            for i, port in enumerate(ports[1 + self.replica_count:]):
                self._sentinel_node(i, port, master.port).start()
            self._wait(f"{self.sentinel_count} sentinel(s) knowing master, replicas and each other",
                       self._sentinels_problem, self.start_timeout)
        except TopologyError as e:
            tails = self.log_tails()
            self.close()
            raise TopologyError(f"{e}\n{tails}") from None
        except BaseException:
            self.close()
            raise
        return self

    def log_tails(self, lines: int = 8) -> str:
        """The last lines of every node's log (the workdirs go with ``close()``)."""
        out = []
        for log in sorted(self.basedir.glob("*/*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.relative_to(self.basedir)}\n" + "\n".join(tail))
        return "\n".join(out)

    def close(self) -> None:
        """Kill every process and remove the workdirs; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for node in [*self.sentinels, *self.servers]:
            with contextlib.suppress(Exception):  # keep going: the other nodes must die too
                node.stop(kill=True)
        shutil.rmtree(self.basedir, ignore_errors=True)

    def __enter__(self) -> SentinelTopology:
        return self if self.servers else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _data_node(self, name: str, port: int, args: list[str]) -> RedisServer:
        workdir = self.basedir / name
        workdir.mkdir()
        # The default diskless sync waits 5 s for more replicas before each full sync: not here.
        server = RedisServer(port=port, persistent=self.persistent, workdir=workdir,
                             args=[*args, "--repl-diskless-sync-delay", "0", "--logfile", str(workdir / "redis.log"),
                                   *self.server_args])
        self.servers.append(server)
        return server

    def _sentinel_node(self, index: int, port: int, master_port: int) -> RedisServer:
        workdir = self.basedir / f"sentinel{index}"
        workdir.mkdir()
        name = self._master_name
        config = workdir / "sentinel.conf"  # Sentinel rewrites it: it must be writable, and its own
        config.write_text("\n".join([
            f"port {port}",
            f"bind {HOST}",
            f"dir {workdir}",
            f"logfile {workdir / 'sentinel.log'}",
            "sentinel resolve-hostnames no",
            "sentinel announce-hostnames no",
            f"sentinel monitor {name} {HOST} {master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
            "",
        ]))
        sentinel = RedisServer(port=port, workdir=workdir, config_file=config, args=["--sentinel"])
        self.sentinels.append(sentinel)
        return sentinel

    # -- where things are --------------------------------------------------------------------

    @property
    def master_name(self) -> str:
        return self._master_name

    @property
    def sentinel_addresses(self) -> list[Address]:
        return [(HOST, s.port) for s in self.sentinels]

    def url(self, db: int = 0, **query: str | int | float) -> str:
        """``redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,.../<master name>/<db>[?query]``."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        tail = f"?{urlencode(query)}" if query else ""
        return f"redis+sentinel://{hosts}/{self._master_name}/{db}{tail}"

    def master_address(self) -> Address:
        """The master's address according to the first sentinel that answers."""
        for sentinel in self.sentinels:
            address = self._sentinel_master_address(sentinel)
            if address is not None:
                return address
        raise TopologyError("no sentinel answered SENTINEL get-master-addr-by-name")

    def server_at(self, address: Address) -> RedisServer:
        for server in self.servers:
            if (HOST, server.port) == tuple(address):
                return server
        raise KeyError(f"no data node of this topology at {address}")

    def master_server(self) -> RedisServer:
        """The data node the sentinels name as master (it may be down: see ``wait_failover``)."""
        return self.server_at(self.master_address())

    def replica_servers(self) -> list[RedisServer]:
        """The running data nodes that answer ``ROLE`` as replicas (a killed node is in neither list)."""
        return [s for s in self.servers if role(s) == "slave"]

    def replica_offsets(self) -> dict[Address, int]:
        """Each connected replica's acknowledged replication offset, from the master's ``ROLE``."""
        with client(self.master_server().port) as c:
            reply = c.execute_command("ROLE")
        return {(str(ip), int(port)): int(offset) for ip, port, offset in reply[2]}

    def master_offset(self) -> int:
        with client(self.master_server().port) as c:
            return int(c.execute_command("ROLE")[1])

    def wait_replicas_synced(self, timeout: float = 10.0) -> None:
        """Until every replica acknowledged the master's current offset (``WAIT``, from outside)."""
        target = self.master_offset()

        def problem() -> str | None:
            offsets = self.replica_offsets()
            behind = {a: o for a, o in offsets.items() if o < target}
            if len(offsets) < len(self.replica_servers()) or behind:
                return f"master offset {target}, replicas {offsets}"
            return None

        self._wait("replicas caught up with the master", problem, timeout)

    # -- outages -----------------------------------------------------------------------------

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master; returns its RedisServer (``restart`` brings it back)."""
        server = self.master_server()
        server.stop(kill=True)
        self._killed_at = time.monotonic()
        return server

    def wait_failover(self, old_address: Address, timeout: float = 30.0) -> tuple[Address, float]:
        """Until every running sentinel names the same master, not ``old_address``, and that node
        answers ``ROLE`` as master. Returns it and the seconds since ``kill_master()`` (since this
        call when the master was not killed through ``kill_master``)."""
        started = self._killed_at if self._killed_at is not None else time.monotonic()
        found: list[Address] = []

        def problem() -> str | None:
            seen = {s.port: self._sentinel_master_address(s) for s in self.sentinels if s.running}
            addresses = set(seen.values())
            if len(addresses) != 1 or None in addresses or tuple(old_address) in addresses:
                return f"sentinels name the masters {seen} (old master {old_address})"
            address = addresses.pop()
            assert address is not None
            node_role = role(self.server_at(address))
            if node_role != "master":
                return f"sentinels name {address}, which answers ROLE {node_role}"
            found.append(address)
            return None

        self._wait("a failover", problem, timeout)
        self._killed_at = None
        return found[-1], time.monotonic() - started

    def restart(self, server: RedisServer, *, follow_current_master: bool = False) -> RedisServer:
        """Start a stopped node again, same port and workdir.

        By default with its own command line, as a crashed machine would come back: the first
        master without ``--replicaof`` (it comes up an empty master until a sentinel converts it,
        see the module doc), a replica still pointing at the master it was started with (a
        sentinel fixes that). ``follow_current_master=True`` starts it with ``--replicaof`` the
        master the sentinels name now, as an operator would. ``wait_replica`` waits for either.
        """
        if follow_current_master:
            host, port = self.master_address()
            server.args = [*_without_replicaof(server.args), "--replicaof", host, str(port)]
        return server.start()

    def wait_replica(self, server: RedisServer, timeout: float = 30.0) -> float:
        """Until ``server`` is a replica of the master the sentinels name, with its link up, and
        every sentinel lists it as a healthy replica. Returns the seconds waited."""
        started = time.monotonic()

        def problem() -> str | None:
            master = self.master_address()
            try:
                with client(server.port) as c:
                    info = c.info("replication")
            except redis.RedisError as e:
                return f"{HOST}:{server.port} does not answer: {e}"
            if info.get("role") != "slave":
                return f"{HOST}:{server.port} is still a {info.get('role')}"
            if (str(info.get("master_host")), int(info.get("master_port", 0))) != master:
                return f"{HOST}:{server.port} replicates {info.get('master_host')}:{info.get('master_port')}, " \
                       f"not {master}"
            if info.get("master_link_status") != "up":
                return f"{HOST}:{server.port} master_link_status:{info.get('master_link_status')}"
            for sentinel in self.sentinels:
                if sentinel.running and (HOST, server.port) not in self._healthy_replicas(sentinel):
                    return f"sentinel {sentinel.port} does not list {HOST}:{server.port} as a healthy replica"
            return None

        self._wait(f"{HOST}:{server.port} rejoining as a replica", problem, timeout)
        return time.monotonic() - started

    # -- helpers -----------------------------------------------------------------------------

    def _sentinel_master_address(self, sentinel: RedisServer) -> Address | None:
        try:
            with client(sentinel.port) as c:
                reply = c.sentinel_get_master_addr_by_name(self._master_name)
        except redis.RedisError:
            return None
        return None if reply is None else (str(reply[0]), int(reply[1]))

    def _healthy_replicas(self, sentinel: RedisServer) -> set[Address]:
        with client(sentinel.port) as c:
            replicas: list[dict[str, Any]] = c.sentinel_slaves(self._master_name)
        return {(str(r["ip"]), int(r["port"])) for r in replicas
                if not (r.get("is_sdown") or r.get("is_odown") or r.get("is_disconnected"))}

    def _replicas_problem(self) -> str | None:
        for server in self.servers[1:]:
            try:
                with client(server.port) as c:
                    status = c.info("replication").get("master_link_status")
            except redis.RedisError as e:
                return f"replica {HOST}:{server.port} does not answer: {e}"
            if status != "up":
                return f"replica {HOST}:{server.port} has master_link_status:{status}"
        return None

    def _sentinels_problem(self) -> str | None:
        master = (HOST, self.servers[0].port)
        replicas = {(HOST, s.port) for s in self.servers[1:]}
        for sentinel in self.sentinels:
            name = f"sentinel {HOST}:{sentinel.port}"
            try:
                if self._sentinel_master_address(sentinel) != master:
                    return f"{name} does not name {master} as master {self._master_name!r}"
                with client(sentinel.port) as c:
                    others = c.sentinel_sentinels(self._master_name)
                if len(others) != self.sentinel_count - 1:
                    return f"{name} knows {len(others)} other sentinel(s), not {self.sentinel_count - 1}"
                known = self._healthy_replicas(sentinel)
            except redis.RedisError as e:
                return f"{name} does not answer: {e}"
            if known != replicas:
                return f"{name} knows the healthy replicas {sorted(known)}, not {sorted(replicas)}"
        return None

    def _wait(self, what: str, problem: Callable[[], str | None], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            last = problem()
            if last is None:
                return
            if time.monotonic() > deadline:
                raise TopologyError(f"{what}: not after {timeout:g} s: {last}")
            time.sleep(0.05)


def _without_replicaof(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
        elif arg in ("--replicaof", "--slaveof"):
            skip = 2
        else:
            out.append(arg)
    return out


@pytest.fixture
def sentinel_topology(request: pytest.FixtureRequest) -> Iterator[SentinelTopology]:
    """A started ``SentinelTopology()``, killed after the test whatever happens. Other shapes:
    ``@pytest.mark.parametrize("sentinel_topology", [{"replicas": 2}], indirect=True)``."""
    kwargs: dict[str, Any] = getattr(request, "param", {})
    topology = SentinelTopology(**kwargs)
    try:
        yield topology.start()
    finally:
        topology.close()
