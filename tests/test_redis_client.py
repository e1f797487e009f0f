"""aiocelery's own Redis client (``aiocelery._redis``) against real redis-servers.

The broker's behaviour on top of it is covered by the contract, reliability and chaos suites;
these pin down the client itself: replies, errors, scripts, targets, the pool, timeouts,
reconnects, and the thread-side synchronous client.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aiocelery._redis.client import Client
from aiocelery._redis.connection import Target
from aiocelery._redis.errors import RedisConnectionError, RedisTimeoutError, ReplyError
from aiocelery._redis.scripts import Script
from aiocelery._redis.sync import SyncClient
from aiocelery._redis.wire import pack
from aiocelery.urls import parse_url

from .helpers import eventually
from .redis_server import RedisServer, free_port

ECHO = Script("echo", "return {KEYS[1], ARGV[1]}")
BAD = Script("bad", "return redis.call('NOPE')")
BROKEN = Script("broken", "this is not lua")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    c = Client(target(redis_url), max_connections=4, socket_timeout=5.0)
    yield c
    await c.aclose()


@pytest.fixture
async def probe(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.Redis.from_url(redis_url)
    yield r
    await r.aclose()


@pytest.fixture(scope="module")
def secured() -> Iterator[tuple[int, Path]]:
    """A redis-server with a password, listening on a TCP port and on a unix socket."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    port, workdir = free_port(), Path(tempfile.mkdtemp(prefix="aiocelery-secured-"))
    sock = workdir / "redis.sock"
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir), "--unixsocket", str(sock), "--requirepass", "s3cr%t"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port, sock
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


# -- replies and errors -------------------------------------------------------------------------


async def test_commands_return_raw_replies(client: Client, key_prefix: str) -> None:
    key = f"{key_prefix}:h"
    assert await client.call("HSET", key, "a", "1", "b", b"\xff") == 2
    assert await client.call("HMGET", key, "a", "b", "missing") == [b"1", b"\xff", None]
    assert await client.call("EXISTS", key) == 1
    assert await client.call("PING") == b"PONG"


async def test_error_replies_raise_alone_and_come_back_in_place_in_a_batch(client: Client, key_prefix: str) -> None:
    key = f"{key_prefix}:s"
    await client.call("SET", key, "x")
    with pytest.raises(ReplyError) as info:
        await client.call("HGET", key, "f")
    assert info.value.code == "WRONGTYPE"
    replies = await client.call_many([("GET", key), ("HGET", key, "f"), ("INCR", f"{key_prefix}:n")])
    assert replies[0] == b"x" and replies[2] == 1
    assert isinstance(replies[1], ReplyError) and replies[1].code == "WRONGTYPE"
    assert await client.call_many([]) == []


async def test_scripts_are_loaded_on_noscript(client: Client, probe: aioredis.Redis) -> None:
    await probe.script_flush()
    assert await client.run_script(ECHO, ["k"], ["v"]) == [b"k", b"v"]
    await probe.script_flush()  # as after a Redis restart
    replies = await client.run_scripts(ECHO, [(["a"], [1]), (["b"], [2])])
    assert replies == [[b"a", b"1"], [b"b", b"2"]]


async def test_a_script_error_names_itself(client: Client) -> None:
    with pytest.raises(ReplyError, match=r"NOPE|nknown"):
        await client.run_script(BAD, [], [])
    with pytest.raises(ReplyError, match=r"script broken.lua does not load"):
        await client.run_script(BROKEN, [], [])


# -- targets (URLs are parsed by aiocelery.urls; see test_config.py) ------------------------------


def target(url: str) -> Target:
    """The client's Target for ``url``, as a Config builds it."""
    parsed = parse_url("broker", url)
    assert parsed is not None
    return parsed


async def test_password_database_and_unix_socket(secured: tuple[int, Path]) -> None:
    port, sock = secured
    tcp = Client(target(f"redis://:s3cr%25t@127.0.0.1:{port}/5"))
    unix = Client(target(f"unix://:s3cr%25t@{sock}?db=5"))
    try:
        await tcp.call("SET", "where", "db5")
        assert await unix.call("GET", "where") == b"db5"
        assert await unix.call("CLIENT", "INFO") == await unix.call("CLIENT", "INFO")  # one connection reused
    finally:
        await tcp.aclose()
        await unix.aclose()
    wrong = Client(target(f"redis://:nope@127.0.0.1:{port}/0"), attempts=1)
    with pytest.raises(RedisConnectionError, match=r"refused the connection setup.*(WRONGPASS|invalid)"):
        await wrong.call("PING")
    await wrong.aclose()
    sync = SyncClient(target(f"redis://:s3cr%25t@127.0.0.1:{port}/5"), timeout=2.0)
    try:
        assert sync.execute([b"*2\r\n$3\r\nGET\r\n$5\r\nwhere\r\n"]) == [b"db5"]
    finally:
        sync.close()


async def test_connection_refused_is_a_connection_error() -> None:
    c = Client(target(f"redis://127.0.0.1:{free_port()}/0"), attempts=2)
    with pytest.raises(RedisConnectionError, match=r"could not connect to Redis at 127\.0\.0\.1"):
        await c.call("PING")
    assert isinstance(RedisConnectionError(), ConnectionError)
    await c.aclose()


# -- the pool -----------------------------------------------------------------------------------


async def test_callers_beyond_max_connections_wait_for_one(redis_url: str, probe: aioredis.Redis,
                                                           key_prefix: str) -> None:
    c = Client(target(redis_url), max_connections=2)
    name = f"{key_prefix}-pool"
    try:
        async def blocked(i: int) -> object:
            await c.call("CLIENT", "SETNAME", name)
            return await c.call("BLPOP", f"{key_prefix}:nothing:{i}", 0.2)

        started = time.monotonic()
        replies = await asyncio.gather(*(blocked(i) for i in range(6)))
        elapsed = time.monotonic() - started
        clients = [line for line in (await probe.client_list()) if line.get("name") == name]
        assert replies == [None] * 6
        assert len(clients) == 2, clients
        assert elapsed >= 0.55, f"6 blocking calls on 2 connections took {elapsed:.2f} s"  # three rounds of 0.2 s
    finally:
        await c.aclose()


async def test_a_silent_connection_times_out_and_is_dropped(redis_url: str, key_prefix: str) -> None:
    c = Client(target(redis_url), max_connections=1, socket_timeout=0.2, attempts=1)
    try:
        with pytest.raises(RedisTimeoutError, match=r"no reply from Redis within 0\.2 s"):
            await c.call("BLPOP", f"{key_prefix}:never", 2)
        assert isinstance(RedisTimeoutError(), TimeoutError)
        # the late BLPOP reply must not reach the next caller: that connection is gone
        await c.call("RPUSH", f"{key_prefix}:never", "late")
        assert await c.call("LPOP", f"{key_prefix}:never") == b"late"
    finally:
        await c.aclose()


async def test_a_call_timeout_shorter_than_the_socket_timeout(redis_url: str, key_prefix: str) -> None:
    c = Client(target(redis_url), socket_timeout=10.0)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await c.execute([b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n5\r\n"], timeout_s=0.3)
        assert time.monotonic() - started < 2.0
    finally:
        await c.aclose()


async def test_the_deadline_timer_rearms_for_a_later_call_and_tightens_for_a_shorter_one(
        redis_url: str, key_prefix: str) -> None:
    """One timer per connection: a call that outlives an earlier call's deadline is not failed
    by it, and a call with a shorter limit than the armed one still times out on time."""
    c = Client(target(redis_url), max_connections=1, socket_timeout=0.4, attempts=1)
    key = f"{key_prefix}:rearm"
    try:
        assert await c.call("PING") == b"PONG"  # arms the connection's timer at now + 0.4 s
        await asyncio.sleep(0.3)
        # BLPOP blocks 0.3 s, past the first deadline: the timer re-arms for this call's own
        assert await c.call("BLPOP", key, 0.3) is None
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await c.execute([pack(["BLPOP", key, 2])], timeout_s=0.1)
        assert time.monotonic() - started < 0.35, "the shorter limit must fire before the armed 0.4 s"
        assert await c.call("PING") == b"PONG"  # on a new connection
    finally:
        await c.aclose()


async def test_a_cancelled_call_leaves_nothing_for_the_next(client: Client, probe: aioredis.Redis,
                                                            key_prefix: str) -> None:
    key = f"{key_prefix}:list"
    task = asyncio.ensure_future(client.call("BLPOP", key, 1))

    async def blocked() -> bool:  # the call is on the wire: Redis holds it
        return any(c.get("cmd") == "blpop" for c in await probe.client_list())

    assert await eventually(blocked)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await client.call("RPUSH", key, "x")
    assert await client.call("LRANGE", key, 0, -1) == [b"x"]


async def test_a_killed_connection_is_replaced_transparently(client: Client, probe: aioredis.Redis,
                                                             key_prefix: str) -> None:
    name = f"{key_prefix}-killme"
    await client.call("CLIENT", "SETNAME", name)
    killed = await probe.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert killed >= 1
    assert await client.call("PING") == b"PONG"


async def test_a_redis_restart_is_ridden_out(key_prefix: str) -> None:
    server = RedisServer().start()
    c = Client(target(server.url), socket_timeout=2.0, attempts=8)
    try:
        assert await c.call("PING") == b"PONG"
        server.stop()
        restart = asyncio.get_running_loop().run_in_executor(None, lambda: (time.sleep(0.3), server.start()))
        assert await c.call("PING") == b"PONG"  # retried with backoff until it is back
        await restart
    finally:
        await c.aclose()
        server.close()


async def test_a_closed_client_refuses(redis_url: str) -> None:
    c = Client(target(redis_url))
    await c.call("PING")
    await c.aclose()
    with pytest.raises(RedisConnectionError, match="closed"):
        await c.call("PING")


# -- the synchronous client (lease thread) ------------------------------------------------------


def test_sync_client_scripts_timeouts_and_reconnects(redis_server: RedisServer) -> None:
    c = SyncClient(target(redis_server.url), timeout=0.3)
    try:
        with socket.create_connection(("127.0.0.1", redis_server.port)) as s:
            s.sendall(b"SCRIPT FLUSH\r\n")
            assert s.recv(16).startswith(b"+OK")
        assert c.run_script(ECHO, ["k"], ["v"]) == [b"k", b"v"]
        with pytest.raises(RedisTimeoutError):
            c.execute([b"*3\r\n$5\r\nBLPOP\r\n$6\r\nnone:x\r\n$1\r\n2\r\n"])
        assert c.execute([b"*1\r\n$4\r\nPING\r\n"]) == [b"PONG"]  # a new connection
        with pytest.raises(ReplyError, match=r"NOPE|nknown"):
            c.run_script(BAD, [], [])
    finally:
        c.close()



# -- a pure client --------------------------------------------------------------------------------


def test_the_client_imports_nothing_from_the_rest_of_aiocelery() -> None:
    import ast

    import aiocelery._redis as package

    outside: list[str] = []
    for source in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            outside += [f"{source.name}: {name}" for name in names
                        if name.split(".")[0] == "aiocelery" and not name.startswith("aiocelery._redis")]
    assert outside == []
