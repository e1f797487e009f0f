"""The network between clients, workers and Redis misbehaves (docs/delivery.md, failure scenarios 7-10).

Faults come from ``FaultProxy``; whoever must see the fault connects through it, the rest directly.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from aiocelery import SendError

from .harness import Chaos, report, wait_until
from .proxy import FaultProxy


async def passed_on(chaos: Chaos, proxy: FaultProxy) -> None:
    """Wait until the proxy holds nothing more for Redis: every client connection through it is
    closed and finished, and Redis has dropped each one's upstream twin, so it ran whatever
    arrived on it (a late copy of a timed-out send included) and nothing more can arrive."""
    async def nothing_left() -> bool:
        if proxy.open_connections():
            return False
        return not {c["addr"] for c in await chaos.rds.client_list()} & set(proxy.closed_upstreams)

    await wait_until(nothing_left, "the proxy to pass on what it held", timeout=10)


# -- 7. Redis unreachable at send time ----------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", ["blackhole", "stall"])
async def test_07_unreachable_at_send_then_resend_same_id_is_one_task(chaos: Chaos, fault: str) -> None:
    send_timeout = 1.0
    await chaos.workers(1, concurrency=4)
    with FaultProxy(chaos.broker.port) as proxy:
        app = chaos.app(proxy.url, send_timeout_s=send_timeout)
        warm = []
        if fault == "stall":  # a pooled connection exists, and its late bytes will arrive after the resume
            warm.append((await app.send_task("chaos.echo", [0])).id)
            await chaos.wait_states(warm, {"SUCCESS"}, timeout=10)
            proxy.stall()
        else:
            proxy.blackhole()
        task_id = f"t7-{uuid.uuid4()}"
        t = time.monotonic()
        with pytest.raises(SendError) as info:
            await app.send_task("chaos.echo", [7], task_id=task_id)
        took = time.monotonic() - t
        assert took < send_timeout + 0.5, f"SendError after {took:.2f} s (send_timeout_s {send_timeout})"
        assert "chaos.echo" in str(info.value) and task_id in str(info.value)
        assert info.value.task_id == task_id

        proxy.heal()
        result = await app.send_task("chaos.echo", [7], task_id=task_id)
        assert result.id == task_id
        assert await result.get(timeout=15) == 7
        await app.close()  # the client lets go of its connections...
        await passed_on(chaos, proxy)  # ...and a late copy of the first send, if any, has landed by now
    assert await chaos.entries_added() == len(warm) + 1
    stats = await chaos.verify([*warm, task_id])
    report(f"07 unreachable at send ({fault})", send_error_after_s=f"{took:.2f}", **stats.__dict__)


# -- 8. reply lost after the enqueue was applied ------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("then_reset", [False, True], ids=["reply-swallowed", "reply-swallowed-then-reset"])
async def test_08_lost_reply_and_client_retry_make_one_task(chaos: Chaos, then_reset: bool) -> None:
    await chaos.workers(1, concurrency=4)
    with FaultProxy(chaos.broker.port) as proxy:
        app = chaos.app(proxy.url, send_timeout_s=30.0)
        warm = (await app.send_task("chaos.echo", [0])).id  # scripts loaded, one pooled connection
        await chaos.wait_states([warm], {"SUCCESS"}, timeout=10)
        proxy.drop_next_reply(then_reset=then_reset)
        task_id = f"t8-{uuid.uuid4()}"
        t = time.monotonic()
        result = await app.send_task("chaos.echo", [8], task_id=task_id)  # redis-py re-sends the script
        took = time.monotonic() - t
        assert proxy.dropped == 1
        assert await result.get(timeout=15) == 8
    assert await chaos.entries_added() == 2  # the warm-up and this one: the re-send added nothing
    stats = await chaos.verify([warm, task_id])
    report(f"08 reply lost ({'then reset' if then_reset else 'swallowed'})", send_took_s=f"{took:.2f}",
           **stats.__dict__)


@pytest.mark.timeout(60)
async def test_08c_lost_reply_of_begin_runs_once_and_counts_no_crash(chaos: Chaos) -> None:
    with FaultProxy(chaos.broker.port) as proxy:
        [worker] = await chaos.workers(1, concurrency=4, broker_url=proxy.url)
        app = chaos.app()
        warm = await app.send_task("chaos.echo", [0])  # the worker's scripts are loaded
        assert await warm.get(timeout=10) == 0
        proxy.drop_next_reply(match=b"$3\r\nrun\r\n")  # begin.lua's reply row starts with 'run'
        result = await app.send_task("chaos.sleep", [8, 1.0])
        assert await result.get(timeout=30) == 8
        if proxy.dropped != 1:
            pytest.fail("the begin reply was not dropped: the scenario did not happen")
    runs = await chaos.runs(result.id)
    record = await chaos.record(result.id)
    report("08c begin reply lost", runs=[(r.worker, r.attempt) for r in runs], attempt=record["attempt"],
           crashes=record["crashes"], reclaims_of_own_delivery=worker.stderr.count("reclaiming"))
    assert len(runs) == 1, f"ran {len(runs)} times: {runs}; record {record}"
    assert (runs[0].attempt, runs[0].redelivered) == (1, False), runs
    assert (record["attempt"], record["crashes"]) == ("1", "0"), record


# -- 9. network stall longer than the socket timeout, under load --------------------------------


@pytest.mark.timeout(120)
async def test_09_stall_longer_than_socket_timeout_under_load(chaos: Chaos) -> None:
    n_senders, per_sender, stall_s = 3, 100, 12.0
    with FaultProxy(chaos.broker.port) as proxy:
        workers = await chaos.workers(2, concurrency=10, broker_url=proxy.url, AIOCELERY_LEASE_S="3")
        app = chaos.app(proxy.url, send_timeout_s=60.0)
        sent: list[str] = []

        async def sender(k: int) -> None:
            for i in range(per_sender):
                sent.append((await app.send_task("chaos.echo", [k * 1000 + i], task_id=f"t9-{k}-{i}")).id)
                await asyncio.sleep(0.01)

        senders = asyncio.gather(*(sender(k) for k in range(n_senders)))
        await asyncio.sleep(0.5)
        before = len(sent)
        proxy.stall()
        await asyncio.sleep(stall_s)
        proxy.resume()
        resumed = time.monotonic()
        await asyncio.wait_for(senders, 60)
        ids = sorted(sent)
        assert len(ids) == n_senders * per_sender
        await chaos.wait_states(ids, {"SUCCESS"}, timeout=45)
        recovered_s = time.monotonic() - resumed
    assert await chaos.entries_added() == len(ids), "an enqueue was applied twice"
    keys = [k async for k in chaos.rds.scan_iter(match=f"{chaos.prefix}:task:*", count=1000)]
    assert len(keys) == len(ids)
    assert all(w.popen.poll() is None for w in workers), [w.describe() for w in workers]
    stats = await chaos.verify(ids, max_runs=2)
    report("09 stall 12 s under load", sent_before_stall=before, all_done_after_resume_s=f"{recovered_s:.2f}",
           **stats.__dict__)


# -- 10. results published before get(), and lost on the wire -----------------------------------


@pytest.mark.timeout(60)
async def test_10a_result_published_before_get_returns_at_once(chaos: Chaos) -> None:
    await chaos.workers(1, concurrency=4)
    app = chaos.app()
    result = await app.send_task("chaos.echo", [10])
    await chaos.wait_states([result.id], {"SUCCESS"}, timeout=10)
    t = time.monotonic()
    assert await result.get(timeout=10) == 10
    took = time.monotonic() - t
    assert took < 0.5
    report("10a published before get", get_s=f"{took:.3f}")


@pytest.mark.timeout(60)
async def test_10b_pubsub_reset_at_publish_time_get_still_returns(chaos: Chaos) -> None:
    await chaos.workers(1, concurrency=4)
    with FaultProxy(chaos.broker.port) as proxy:
        app = chaos.app(proxy.url)
        result = await app.send_task("chaos.sleep", [11, 1.0])
        waiter = asyncio.ensure_future(result.get(timeout=30))
        await chaos.wait_runs(result.id, 1, timeout=10)

        async def subscribed() -> bool:
            [(_, count)] = await chaos.rds.pubsub_numsub(f"{chaos.prefix}:done:{result.id}")
            return int(count) == 1

        await wait_until(subscribed, "the waiter subscribed", timeout=10)
        proxy.stall()  # the publication will sit in the proxy...
        await chaos.wait_states([result.id], {"SUCCESS"}, timeout=10)
        # Nothing outside shows a message not arriving: without the stall the publication would
        # reach the waiter within a loopback round trip of the SUCCESS just read, so 0.2 s is ample.
        await asyncio.sleep(0.2)
        assert not waiter.done()
        proxy.reset_all()  # ...and die with the connection
        proxy.resume()
        t = time.monotonic()
        assert await asyncio.wait_for(waiter, 15) == 11
        took = time.monotonic() - t
    assert took < 3.0, f"get() returned {took:.2f} s after the pub/sub connection was reset"
    report("10b pub/sub reset at publish", get_after_reset_s=f"{took:.2f}")


@pytest.mark.timeout(60)
async def test_10c_lost_publication_is_caught_by_the_safety_recheck(chaos: Chaos) -> None:
    await chaos.workers(1, concurrency=4)
    with FaultProxy(chaos.broker.port) as proxy:
        app = chaos.app(proxy.url)
        result = await app.send_task("chaos.sleep", [12, 1.0])
        proxy.drop_next_reply(match=b"message")  # only the pub/sub message; the connection stays up
        waiter = asyncio.ensure_future(result.get(timeout=30))
        await chaos.wait_states([result.id], {"SUCCESS"}, timeout=10)
        t = time.monotonic()
        await wait_until(lambda: asyncio.sleep(0, proxy.dropped == 1), "the publication dropped", timeout=5)
        assert await asyncio.wait_for(waiter, 15) == 12
        took = time.monotonic() - t
    assert took < 5.0, f"get() returned {took:.2f} s after the result was stored"
    report("10c publication dropped", get_after_store_s=f"{took:.2f}")
