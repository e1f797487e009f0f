"""rediss:// against real redis-servers that speak only TLS (no plain port), certificates made
by the ``openssl`` CLI: an app end to end, the wrong CA, client certificates, the verify modes.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiocelery import App, Config, SendError
from aiocelery._redis.client import Client
from aiocelery._redis.connection import Target
from aiocelery._redis.errors import RedisConnectionError
from aiocelery._redis.sync import SyncClient
from aiocelery._redis.wire import pack
from aiocelery.urls import TLSSettings, parse_url

from .redis_server import free_port
from .tls_certs import TLSFiles, make_tls_files

PING = pack(["PING"])


@dataclass
class TLSRedis:
    """A redis-server listening with TLS only, on ``port``."""

    port: int
    proc: subprocess.Popen[bytes]

    def url(self, host: str = "localhost", query: str = "") -> str:
        return f"rediss://{host}:{self.port}/0" + (f"?{query}" if query else "")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _start(certs: TLSFiles, workdir: Path, *, auth_clients: bool) -> TLSRedis:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    port, log = free_port(), workdir / "redis.log"
    proc = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--protected-mode", "no", "--tls-cert-file", str(certs.server_cert),
         "--tls-key-file", str(certs.server_key), "--tls-ca-cert-file", str(certs.ca),
         "--tls-auth-clients", "yes" if auth_clients else "no", "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text() if log.exists() else ""
            if "TLS" in text or "tls" in text:
                pytest.skip(f"this redis-server cannot serve TLS: {text.strip().splitlines()[-1:]}")
            raise RuntimeError(f"redis-server with TLS exited ({proc.returncode}): {text}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw, \
                    context.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(PING)
                if s.recv(16).startswith(b"+PONG"):
                    return TLSRedis(port, proc)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server with TLS did not start on port {port}")


@pytest.fixture(scope="module")
def tls_redis(certs: TLSFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRedis]:
    """Server certificate checked by clients; clients need no certificate."""
    server = _start(certs, tmp_path_factory.mktemp("redis-tls"), auth_clients=False)
    yield server
    server.proc.terminate()
    server.proc.wait(10)


@pytest.fixture(scope="module")
def mtls_redis(certs: TLSFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRedis]:
    """``tls-auth-clients yes``: clients must show a certificate signed by the CA."""
    server = _start(certs, tmp_path_factory.mktemp("redis-mtls"), auth_clients=True)
    yield server
    server.proc.terminate()
    server.proc.wait(10)


def target(url: str, **tls: str) -> Target:
    parsed = parse_url("broker", url, TLSSettings(**tls))
    assert parsed is not None
    return parsed


async def ping(t: Target) -> object:
    client = Client(t, attempts=1, connect_timeout=3.0)
    try:
        return await client.call("PING")
    finally:
        await client.aclose()


# -- an app end to end --------------------------------------------------------------------------


@pytest.mark.parametrize("mutual", [False, True], ids=["server-cert", "client-cert"])
async def test_a_rediss_app_sends_and_runs_a_task(mutual: bool, tls_redis: TLSRedis, mtls_redis: TLSRedis,
                                                  certs: TLSFiles, key_prefix: str) -> None:
    server = mtls_redis if mutual else tls_redis
    client_files = {"ssl_certfile": str(certs.client_cert), "ssl_keyfile": str(certs.client_key)} if mutual else {}
    config = Config(broker=server.url(), ssl_ca_certs=str(certs.ca), key_prefix=key_prefix, fetch_block_s=0.2,
                    lease_s=0.6, **client_files)  # type: ignore[arg-type]
    assert config.broker_target is not None and config.broker_target.tls is not None
    app = App(config)

    @app.task
    async def slow_add(a: int, b: int) -> int:
        await asyncio.sleep(0.5)  # outlives the lease: its renewal (a blocking socket, in a thread) is TLS too
        return a + b

    try:
        async with app.worker(concurrency=2):
            result = await slow_add.delay(2, 3)
            assert await result.get(timeout=10) == 5
    finally:
        await app.close()


async def test_the_ca_can_be_given_in_the_url(tls_redis: TLSRedis, certs: TLSFiles) -> None:
    assert await ping(target(tls_redis.url(query=f"ssl_ca_certs={certs.ca}"))) == b"PONG"


# -- failures are clear and quick ---------------------------------------------------------------


async def test_the_wrong_ca_fails_with_a_clear_error(tls_redis: TLSRedis, certs: TLSFiles, key_prefix: str) -> None:
    wrong = target(tls_redis.url(), ssl_ca_certs=str(certs.other_ca))
    with pytest.raises(RedisConnectionError, match=r"TLS handshake with Redis at localhost:\d+ failed "
                                                   r"\(.*certificate.*\); the server's certificate is not trusted"):
        await ping(wrong)
    sync = SyncClient(wrong, timeout=2.0)
    with pytest.raises(RedisConnectionError, match=r"TLS handshake .* not trusted"):
        sync.execute([PING])
    sync.close()

    app = App(Config(broker=tls_redis.url(), ssl_ca_certs=str(certs.other_ca), key_prefix=key_prefix))

    @app.task
    async def noop() -> None:
        return None

    started = time.monotonic()
    try:
        with pytest.raises(SendError, match=r"TLS handshake .* not trusted"):
            await noop.delay()
    finally:
        await app.close()
    assert time.monotonic() - started < 5.0, "a wrong CA must fail, not hang until the send timeout"


async def test_without_a_ca_the_system_store_does_not_trust_a_private_ca(tls_redis: TLSRedis) -> None:
    with pytest.raises(RedisConnectionError, match="not trusted"):
        await ping(target(tls_redis.url()))


async def test_a_plain_client_on_a_tls_port_fails_quickly(tls_redis: TLSRedis) -> None:
    client = Client(Target(host="127.0.0.1", port=tls_redis.port), attempts=1, socket_timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises((RedisConnectionError, TimeoutError)):
            await client.call("PING")
    finally:
        await client.aclose()
    assert time.monotonic() - started < 3.0


# -- client certificates ------------------------------------------------------------------------


async def test_a_server_that_checks_clients_needs_the_client_certificate(mtls_redis: TLSRedis,
                                                                         certs: TLSFiles) -> None:
    without = target(mtls_redis.url(), ssl_ca_certs=str(certs.ca))
    refused = r"closed the TLS connection before replying to its setup .* give a client certificate and key"
    with pytest.raises(RedisConnectionError, match=refused):
        await ping(without)
    sync = SyncClient(without, timeout=2.0)
    with pytest.raises(RedisConnectionError, match=refused):
        sync.execute([PING])
    sync.close()
    with_cert = target(mtls_redis.url(query=f"ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}"),
                       ssl_ca_certs=str(certs.ca))
    assert await ping(with_cert) == b"PONG"
    sync = SyncClient(with_cert, timeout=2.0)
    try:
        assert sync.execute([PING]) == [b"PONG"]
    finally:
        sync.close()


async def test_a_certificate_file_that_holds_its_key_needs_no_keyfile(mtls_redis: TLSRedis,
                                                                     certs: TLSFiles) -> None:
    t = target(mtls_redis.url(), ssl_ca_certs=str(certs.ca), ssl_certfile=str(certs.client_combined))
    assert t.tls is not None and t.tls.key_file is None
    assert await ping(t) == b"PONG"


# -- verify modes -------------------------------------------------------------------------------


async def test_cert_reqs_none_connects_without_a_ca(tls_redis: TLSRedis, key_prefix: str) -> None:
    config = Config(broker=tls_redis.url(query="ssl_cert_reqs=none"), key_prefix=key_prefix)
    assert config.broker_target is not None
    assert await ping(config.broker_target) == b"PONG"
    app = App(config)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    try:
        async with app.worker():
            assert await (await double.delay(21)).get(timeout=10) == 42
    finally:
        await app.close()


async def test_required_checks_the_host_name_and_optional_does_not(tls_redis: TLSRedis, certs: TLSFiles) -> None:
    by_ip = tls_redis.url(host="127.0.0.1")  # the certificate names localhost only
    with pytest.raises(RedisConnectionError, match="not trusted"):
        await ping(target(by_ip, ssl_ca_certs=str(certs.ca)))
    assert await ping(target(by_ip, ssl_ca_certs=str(certs.ca), ssl_cert_reqs="optional")) == b"PONG"
    with pytest.raises(RedisConnectionError, match="not trusted"):  # optional still checks the CA
        await ping(target(by_ip, ssl_ca_certs=str(certs.other_ca), ssl_cert_reqs="optional"))
