"""What only the RabbitMQ broker does: the topology it declares, held redeliveries, the relay that
publishes what a failed send left behind, queue numbers and purge through RabbitMQ, and the
errors a user sees when RabbitMQ cannot be reached. Everything else runs in the kind-parametrized
suites (test_contract, test_canvas, test_time, test_errors, ...) on RabbitMQ too."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from aiocelery import AMQPConfig, App, ConfigError, SendError
from aiocelery.brokers.amqp.acks import _batch
from aiocelery.brokers.amqp.broker import AmqpBroker
from aiocelery.brokers.amqp.link import message_body, parse_body
from aiocelery.brokers.redis.keys import Keys

from . import rabbitmq, vhosts
from .conftest import make_config
from .helpers import eventually, inject_delivery, publish_raw, raw_redis, settled
from .procs import Procs
from .test_contract import fetch_one, new_consumer, outgoing, success
from .tls_certs import TLSFiles, make_tls_files

QUEUE = "contract"


@pytest.fixture
async def app(redis_url: str, key_prefix: str) -> AsyncIterator[App]:
    application = App(make_config("amqp", redis_url, key_prefix, fetch_block_s=0.5))
    yield application
    await application.close()


def vhost_of(app: App) -> str:
    target = app.config.amqp_target
    assert target is not None
    return target.vhost


def test_message_bodies_round_trip_and_refuse_what_is_not_ours() -> None:
    assert parse_body(message_body("a b", 7)) == ("a b", "7")
    for body in (b"", b"7", b"x 1", b"7 ", b"-1 id", b"7 \xff", b"1 " + b"x" * 2000):
        assert parse_body(body) is None, body


async def test_queues_are_durable_quorum_queues_bound_by_name_and_binding_key(redis_url: str,
                                                                             key_prefix: str) -> None:
    settings = AMQPConfig(exchange="machinery_exchange", binding_key="machinery_task")
    async with App(make_config("amqp", redis_url, key_prefix, default_queue="machinery_tasks",
                               amqp=settings)) as app:
        await app.broker.ensure_queues(["machinery_tasks", "other"])
        vhost = vhost_of(app)
        listed = rabbitmq.rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", "name", "type", "durable")
        rows = {tuple(line.split("\t")) for line in listed.splitlines() if line.strip()}
        assert rows == {("machinery_tasks", "quorum", "true"), ("other", "quorum", "true")}
        bindings = rabbitmq.rabbitmqctl("list_bindings", "-p", vhost, "--no-table-headers", "source_name",
                                        "destination_name", "routing_key")
        found = {tuple(line.split("\t")) for line in bindings.splitlines() if line.startswith("machinery_exchange")}
        assert found == {("machinery_exchange", "machinery_tasks", "machinery_tasks"),
                         ("machinery_exchange", "machinery_tasks", "machinery_task"),
                         ("machinery_exchange", "other", "other")}


async def test_a_queue_declared_otherwise_is_a_config_error_that_says_what_to_do(redis_url: str,
                                                                                 key_prefix: str) -> None:
    config = make_config("amqp", redis_url, key_prefix)
    async with App(config) as quorum:
        await quorum.broker.ensure_queues(["q"])
    async with App(config.replace(amqp=AMQPConfig(queue_type="classic"))) as classic:
        with pytest.raises(ConfigError, match=r"already has a queue 'q' declared differently.*queue_type"):
            await classic.broker.ensure_queues(["q"])


async def test_a_redelivered_message_waits_while_its_task_runs_elsewhere(app: App) -> None:
    # RabbitMQ redelivers a worker's messages when its connection drops, even while that worker
    # still runs them: another consumer holds such a message (its task's lease is live), never runs
    # the task a second time, and acknowledges it unrun once the first run's outcome is stored.
    item = outgoing()
    await app.broker.publish([item])
    await app.broker.ensure_queues([QUEUE])
    first, second = new_consumer(app, "c1"), new_consumer(app, "c2")
    try:
        d1 = await fetch_one(first)
        await inject_delivery(app, QUEUE, item.message.id)  # a second message of the same publication
        assert await second.fetch(10, 0.5) == []  # held: its task runs on c1
        assert await app.broker.settle(d1, success("once")) is True
        record = await app.backend.get_record(item.message.id)
        assert record is not None and (record.state, record.attempt) == ("SUCCESS", 1)
    finally:
        await first.close()
        await second.close()


async def test_a_stale_publication_is_acknowledged_unrun(app: App) -> None:
    item = outgoing()
    await app.broker.publish([item])
    await app.broker.ensure_queues([QUEUE])
    await publish_raw(app, QUEUE, message_body(item.message.id, 99))  # not the record's publication
    c = new_consumer(app, "c1")
    try:
        d = await fetch_one(c)  # the real one runs; the stale one is acked and skipped
        assert d.task_id == item.message.id
        assert await c.fetch(10, 0.3) == []
        assert await app.broker.settle(d, success("ran once")) is True
    finally:
        await c.close()
    stats = await app.connections.operations.queue_stats(QUEUE)
    assert stats.waiting == 0


async def test_a_send_whose_publish_never_happened_is_published_by_the_relay(app: App) -> None:
    # enqueue.lua holds a new task for its sender, which publishes it; a sender that dies first
    # leaves the hold, and the relay (every worker's promote loop) publishes the task when it expires.
    broker = app.broker
    assert isinstance(broker, AmqpBroker)
    item = outgoing()
    await broker._store.enqueue([item])  # the record and the hold, and no message
    keys = Keys(app.config.key_prefix)
    async with raw_redis(app.config.backend_url) as r:
        assert await r.zscore(keys.delayed(QUEUE), item.message.id) is not None
        await r.zadd(keys.delayed(QUEUE), {item.message.id: 0})  # the hold expired
    relay = asyncio.create_task(broker.promote_forever([QUEUE]))
    c = new_consumer(app, "c1")
    try:
        d = await fetch_one(c)
        assert (d.task_id, d.attempt) == (item.message.id, 1)
        async with raw_redis(app.config.backend_url) as r:
            assert await r.hget(keys.task(item.message.id), "pub") == b"2"  # a new publication
            assert await r.zscore(keys.delayed(QUEUE), item.message.id) is None  # unclaimed after the confirm
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        await c.close()


async def test_queue_numbers_and_purge_go_through_rabbitmq(app: App) -> None:
    @app.task(name="p", queue=QUEUE)
    async def p(x: int) -> int:
        return x

    waiting = [await p.delay(i) for i in range(5)]
    later = await p.apply_async((9,), countdown=60)
    stats = await app.connections.operations.queue_stats(QUEUE)
    assert (stats.waiting, stats.running, stats.delayed, stats.dead) == (5, 0, 1, 0)
    assert await app.connections.operations.purge(QUEUE) == 6
    for result in [*waiting, later]:
        record = await result.record()
        assert (record.state, record.reason) == ("REVOKED", "purged")
    stats = await app.connections.operations.queue_stats(QUEUE)
    assert (stats.waiting, stats.delayed) == (0, 0)


async def test_an_unreachable_rabbitmq_is_a_send_error_naming_the_task(redis_url: str, key_prefix: str) -> None:
    closed = f"amqp://guest:guest@127.0.0.1:{_closed_port()}/"
    async with App(make_config("amqp", redis_url, key_prefix, broker=closed, send_timeout_s=2,
                               connect_timeout_s=1)) as app:
        @app.task(name="unsent")
        async def unsent() -> None:
            return None

        with pytest.raises(SendError, match="unsent") as info:
            await unsent.apply_async(task_id="id-1")
        assert "id-1" in str(info.value)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_vhost_pool_hands_out_each_vhost_once() -> None:
    assert vhosts.fresh_vhost() != vhosts.fresh_vhost()


BEAT_TASKS = """
import os
from datetime import timedelta
import redis
from aiocelery import current_task

ledger = redis.Redis.from_url(os.environ["AIOCELERY_RESULT_BACKEND"])


@app.periodic(every=timedelta(seconds=1), missed="all")
def second() -> None:
    ctx = current_task()
    assert ctx is not None
    ledger.rpush(os.environ["AIOCELERY_KEY_PREFIX"] + ":ledger", ctx.id)
"""


@pytest.mark.timeout(90)
async def test_two_schedulers_on_rabbitmq_fire_each_second_once(tmp_path: Path, redis_url: str, key_prefix: str,
                                                                amqp_broker_url: str) -> None:
    with Procs(tmp_path, redis_url, key_prefix, broker=amqp_broker_url) as procs:
        procs.write_module("beat_tasks", BEAT_TASKS)
        beats = [procs.spawn([sys.executable, "-m", "aiocelery", "beat", "-A", "beat_tasks:app", "-l", "warning"])
                 for _ in range(2)]
        worker = procs.worker("beat_tasks:app", "-c", "10", "--without-beat")
        await worker.wait_banner()
        await asyncio.sleep(10)
        for beat in beats:
            beat.signal(signal.SIGTERM)
        for beat in beats:
            assert await beat.wait(30) == 0
        async with App(procs.config()) as app:
            assert await eventually(lambda: settled(app), timeout=30)
        worker.signal(signal.SIGTERM)
        assert await worker.wait(30) == 0
    async with raw_redis(redis_url) as r:
        ran = [x.decode() for x in await r.lrange(f"{key_prefix}:ledger", 0, -1)]
    counts = Counter(ran)
    assert counts and max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
    seconds = sorted(int(task_id.split(":")[-1]) for task_id in counts)
    assert len(seconds) >= 7
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), "a fire time was skipped"


@contextlib.asynccontextmanager
async def tls_front(certs: TLSFiles, *, client_certs: bool = False) -> AsyncIterator[int]:
    """A TLS listener on a free port in front of the machine's RabbitMQ (as a TLS-terminating load
    balancer would be), its certificate naming localhost only; yields the port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    if client_certs:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs.ca)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(rabbitmq.HOST, rabbitmq.PORT)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


async def test_amqps_checks_rabbitmqs_certificate_and_sends_a_client_certificate(
        certs: TLSFiles, redis_url: str, key_prefix: str) -> None:
    vhost = quote(vhosts.fresh_vhost(), safe="")
    async with tls_front(certs, client_certs=True) as port:
        query = f"ssl_ca_certs={certs.ca}&ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}"
        config = make_config("amqp", redis_url, key_prefix, broker=f"amqps://guest:guest@localhost:{port}/{vhost}"
                             f"?{query}", fetch_block_s=0.5)
        async with App(config) as app:
            @app.task(name="over.tls")
            async def over_tls(x: int) -> int:
                return x + 1

            async with app.worker(concurrency=2):
                assert await (await over_tls.delay(41)).get(timeout=10) == 42

        # the wrong CA, and a host name the certificate does not name: refused, as a SendError
        client = f"ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}"
        for broker in (f"amqps://guest:guest@localhost:{port}/{vhost}?ssl_ca_certs={certs.other_ca}&{client}",
                       f"amqps://guest:guest@127.0.0.1:{port}/{vhost}?{query}"):
            async with App(make_config("amqp", redis_url, key_prefix, broker=broker, connect_timeout_s=2,
                                       send_timeout_s=2)) as refused:
                with pytest.raises(SendError, match=r"(?i)certificate"):
                    await refused.send_task("over.tls", args=(1,))


async def test_a_queue_name_rabbitmq_reserves_is_a_config_error(app: App) -> None:
    with pytest.raises(ConfigError, match=r"'amq\.tasks' cannot be a RabbitMQ queue"):
        await app.send_task("any", queue="amq.tasks", task_id="reserved-1")
    assert await app.backend.get_record("reserved-1") is None  # refused before anything was written


@pytest.mark.parametrize(("outstanding", "asked", "upto", "single"), [
    ({1, 2, 3}, [1, 2, 3], 3, []),          # all: one multiple ack
    ({1, 2, 3, 4}, [2, 1, 4], 2, [4]),      # 3 still runs: up to 2, then 4 alone
    ({5, 6}, [6], None, [6]),               # the lowest still runs: one by one
    ({1, 2}, [], None, []),
])
def test_acks_cover_with_one_multiple_ack_only_what_is_done(outstanding: set[int], asked: list[int],
                                                            upto: int | None, single: list[int]) -> None:
    assert _batch(outstanding, asked) == (upto, single)


async def test_sending_again_a_task_whose_send_was_never_confirmed_publishes_it_now(app: App) -> None:
    # A SendError leaves the record and the sender's hold; sending the same id again (what the
    # error advises) publishes it at once as a new publication, and still creates nothing.
    broker = app.broker
    assert isinstance(broker, AmqpBroker)
    item = outgoing()
    await broker._store.enqueue([item])  # as a send whose publish failed: record and hold, no message
    again = await broker.publish([item])
    assert [(p.created, p.task_id) for p in again] == [(False, item.message.id)]
    c = new_consumer(app, "c1")
    try:
        d = await fetch_one(c)
        assert (d.task_id, d.attempt) == (item.message.id, 1)
        async with raw_redis(app.config.backend_url) as r:
            assert await r.hget(Keys(app.config.key_prefix).task(item.message.id), "pub") == b"2"
        assert await app.broker.settle(d, success("once")) is True
        assert await broker.publish([item]) == again  # final now: nothing is published
        assert await c.fetch(10, 0.3) == []
    finally:
        await c.close()


PATIENT = """
import asyncio
import os
import sys

from aiocelery import current_task


@app.task(name="patient")
async def patient() -> dict:
    print(f"running {current_task().id}", file=sys.stderr, flush=True)
    await asyncio.sleep(float(os.environ.get("TASK_SLEEP_S", "0")))
    ctx = current_task()
    return {"attempt": ctx.attempt, "redelivered": ctx.redelivered, "worker": ctx.worker}
"""


@pytest.mark.timeout(60)
async def test_sigterm_hands_a_running_task_back_to_rabbitmq(tmp_path: Path, redis_url: str, key_prefix: str,
                                                             amqp_broker_url: str) -> None:
    with Procs(tmp_path, redis_url, key_prefix, broker=amqp_broker_url) as procs:
        procs.write_module("patient_tasks", PATIENT)
        async with App(procs.config()) as client:
            first = procs.worker("patient_tasks:app", "-c", "2", "--grace", "0.5", "-n", "first", TASK_SLEEP_S="30")
            await first.wait_banner()
            result = await client.send_task("patient")
            await first.wait_output(lambda p: f"running {result.id}\n" in p.stderr, "the task to run")
            first.signal(signal.SIGTERM)
            assert await first.wait(10) == 0, first.describe()
            assert "handed 1 unfinished task(s) back to the queue" in first.stderr, first.describe()
            async with raw_redis(redis_url) as r:
                fields = await r.hmget(Keys(key_prefix).task(result.id), ["state", "crashes"])
            assert fields == [b"PENDING", b"0"]  # a hand-back is not a crash
            stats = await client.connections.operations.queue_stats("aiocelery")
            assert (stats.waiting, stats.running) == (1, 0)  # requeued on RabbitMQ, owned by nobody

            second = procs.worker("patient_tasks:app", "-c", "2", "-n", "second", TASK_SLEEP_S="0")
            assert await result.get(timeout=15) == {"attempt": 2, "redelivered": True, "worker": "second"}
            second.signal(signal.SIGTERM)
            assert await second.wait(15) == 0, second.describe()
            stats = await client.connections.operations.queue_stats("aiocelery")
            assert (stats.waiting, stats.delayed) == (0, 0)
