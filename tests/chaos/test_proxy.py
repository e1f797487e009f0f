"""The fault proxy itself: each fault does what the scenarios rely on, and it stops cleanly."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..redis_server import RedisServer
from .proxy import FaultProxy


@pytest.fixture
def proxy(ledger_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(ledger_server.port) as p:
        yield p


def client(proxy: FaultProxy, timeout: float = 0.5) -> redis.Redis:
    # no retries: each fault must surface on the call that meets it
    return redis.Redis(port=proxy.port, socket_timeout=timeout, socket_connect_timeout=timeout,
                       retry=Retry(NoBackoff(), 0))


@pytest.mark.timeout(30)
def test_forwards_and_stalls_and_resumes(proxy: FaultProxy) -> None:
    with client(proxy) as r:
        assert r.ping()
        proxy.stall()
        t = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            r.ping()
        assert 0.4 < time.monotonic() - t < 2
        proxy.resume()
        assert r.ping()


@pytest.mark.timeout(30)
def test_stalled_bytes_arrive_late(proxy: FaultProxy, ledger_server: RedisServer) -> None:
    key = f"proxy-late-{time.monotonic_ns()}"
    with client(proxy) as r, redis.Redis(port=ledger_server.port) as direct:
        assert r.ping()
        proxy.stall()
        with pytest.raises(redis.TimeoutError):
            r.set(key, 1)  # no retry configured: the client gives up, the bytes wait in the proxy
        assert direct.get(key) is None
        proxy.resume()
        deadline = time.monotonic() + 5
        while direct.get(key) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert direct.get(key) == b"1"  # the command was applied after all, late
        direct.delete(key)


@pytest.mark.timeout(30)
def test_drop_next_reply_swallows_one_reply(proxy: FaultProxy) -> None:
    with client(proxy) as r:
        assert r.ping()
        proxy.drop_next_reply()
        with pytest.raises(redis.TimeoutError):
            r.ping()
        assert proxy.dropped == 1
    with client(proxy) as r:
        assert r.ping()  # one-shot: the next connection works


@pytest.mark.timeout(30)
def test_drop_next_reply_with_match_and_reset(proxy: FaultProxy) -> None:
    with client(proxy) as r:
        assert r.echo("keep") == b"keep"
        proxy.drop_next_reply(match=b"gone", then_reset=True)
        assert r.echo("keep") == b"keep"  # does not match: forwarded
        with pytest.raises(redis.ConnectionError):
            r.echo("gone")
        assert proxy.dropped == 1
        assert proxy.resets == 1


@pytest.mark.timeout(30)
def test_reset_all_sends_rst(proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as a, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as b:
        for s in (a, b):
            s.sendall(b"PING\r\n")
            assert s.recv(16) == b"+PONG\r\n"
        assert proxy.reset_all() == 2
        for s in (a, b):
            with pytest.raises(ConnectionResetError):  # an RST, not a polite FIN
                s.recv(16)
    with client(proxy) as r:
        assert r.ping()  # new connections are forwarded again


@pytest.mark.timeout(30)
def test_blackhole_accepts_but_never_answers_then_heals(proxy: FaultProxy) -> None:
    proxy.blackhole()
    with client(proxy) as r:
        t = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            r.ping()
        assert time.monotonic() - t < 2
    proxy.heal()
    with client(proxy) as r:
        assert r.ping()


@pytest.mark.timeout(30)
def test_upstream_down_means_reset() -> None:
    server = RedisServer().start()
    port = server.port
    server.stop(kill=True)
    server.close()
    with FaultProxy(port) as p, client(p) as r, pytest.raises(redis.ConnectionError):
        r.ping()
