"""Chaos on Redis Sentinel (``chaos_sentinel``: a master, a replica, three sentinels, 1 s down-after).

Two worker subprocesses drain 5,000 short tasks while a client keeps sending them; the master is
SIGKILLed mid-drain; after the failover the killed node comes back as a replica of the new master
(``restart(..., follow_current_master=True)``). A send that raises ``SendError`` is sent again with
the same id, as the error says, until one returns: that id is then *acknowledged*.

* Durable mode (``min_replica_acks=1``): every acknowledged send was on a replica before it
  returned, so none may be lost. Between the failover and the old master's return the new master
  has no replica: sends are refused (``SendError``, the task written but not replicated) and sent
  again.
* Default mode: the master's acknowledgement is enough, so the sends it acknowledged in the last
  moment before the kill and had not yet replicated are lost with it: counted and reported (on
  loopback the replica is usually caught up, so this is often 0).

What a worker wrote on the old master (its acknowledgements, the terminal records) can be lost the
same way in either mode: the task is then delivered and run again, as at-least-once allows; such
duplicates are counted and reported. Measured: the failover (kill to the new master answering
``ROLE`` master) and the time from the kill to tasks flowing again (the first execution, after the
kill, of a task whose first send started after the kill: it can only have come from the new master).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import pytest

from aiocelery import App, SendError

from .harness import Chaos, report

N_TASKS = 5_000
KILL_AFTER = 1_500
"""Acknowledged sends before the master is killed."""
SENDERS = 32
"""Sends in flight at once."""


@dataclass
class Sending:
    """What the sending client saw."""

    acknowledged: dict[str, float] = field(default_factory=dict)
    """id -> wall-clock time its send returned."""
    first_attempt: dict[str, float] = field(default_factory=dict)
    """id -> wall-clock time its first send began."""
    refused: int = 0
    """SendErrors (each followed by sending the same id again)."""


async def send_all(app: App, ids: list[str], sending: Sending, deadline_s: float) -> None:
    """``SENDERS`` coroutines send the ids in order, each SendError answered by sending that id again."""
    queue = iter(enumerate(ids))
    deadline = time.monotonic() + deadline_s

    async def sender() -> None:
        for i, task_id in queue:
            sending.first_attempt[task_id] = time.time()
            for _ in itertools.count():
                if time.monotonic() > deadline:
                    raise AssertionError(f"task {task_id} still refused after {deadline_s} s of sending")
                try:
                    await app.send_task("chaos.echo", [i], task_id=task_id)
                except SendError:
                    sending.refused += 1
                    await asyncio.sleep(0.05)
                else:
                    sending.acknowledged[task_id] = time.time()
                    break

    await asyncio.gather(*(sender() for _ in range(SENDERS)))


@dataclass
class Outcome:
    facts: dict[str, object]
    """For ``report()``."""
    lost: list[str]
    """Acknowledged ids that never reached SUCCESS."""


async def failover_during_drain(chaos: Chaos, *, durable: bool) -> Outcome:
    topology = chaos.sentinel
    assert topology is not None
    workers = await chaos.workers(2, concurrency=8)
    app = chaos.app(send_timeout_s=3, min_replica_acks=1 if durable else 0)
    ids = [f"{chaos.prefix}-{i}" for i in range(N_TASKS)]
    sending = Sending()
    sent = asyncio.create_task(send_all(app, ids, sending, deadline_s=40))

    while len(sending.acknowledged) < KILL_AFTER:  # mid-drain: the client sends, the workers run
        assert not sent.done(), sent
        await asyncio.sleep(0.005)
    old = topology.master_address()
    kill_t = time.time()
    killed = await asyncio.to_thread(topology.kill_master)
    acked_at_kill = len(sending.acknowledged)
    _, failover_s = await asyncio.to_thread(topology.wait_failover, old)
    await asyncio.to_thread(topology.restart, killed, follow_current_master=True)
    rejoin_s = await asyncio.to_thread(topology.wait_replica, killed)
    await sent
    await chaos.reconnect()  # the direct client's pool still holds sockets to the killed master

    # every id was acknowledged at last; wait until the runs stop coming, then look at the records
    assert len(sending.acknowledged) == N_TASKS
    states = await settled_states(chaos, ids, quiet_s=3.0, timeout=60)
    lost = sorted(i for i, s in states.items() if s != "SUCCESS")
    survivors = sorted(set(ids) - set(lost))
    # duplicates as the failover allows: a run whose acknowledgement died with the old master runs again
    stats = await chaos.verify(survivors, max_runs=3, fencing=False, max_publishes=2)

    runs = await chaos.all_runs(ids)
    after_kill = sorted(r.t for rs in runs.values() for r in rs if r.t > kill_t)
    new_sends = {i for i, t in sending.first_attempt.items() if t > kill_t}
    flowing = min((r.t for i in new_sends for r in runs[i]), default=None)
    reruns_same_attempt = sum(len({r.attempt for r in rs}) < len(rs) for rs in runs.values())
    facts: dict[str, object] = {
        "tasks": N_TASKS, "acked_before_kill": acked_at_kill, "executions": sum(len(r) for r in runs.values()),
        "duplicates": stats.duplicates, "dup_same_attempt": reruns_same_attempt, "lost_acked": len(lost),
        "refused_sends": sending.refused, "failover_s": f"{failover_s:.2f}",
        "kill_to_flowing_s": "never" if flowing is None else f"{flowing - kill_t:.2f}",
        "first_exec_after_kill_s": f"{after_kill[0] - kill_t:.3f}" if after_kill else "none",
        "rejoin_s": f"{rejoin_s:.2f}", "publishes": stats.publishes, "done_gaps": chaos.done.gaps,
    }
    for w in workers:
        assert w.popen.poll() is None, w.describe()
    return Outcome(facts, lost)


async def settled_states(chaos: Chaos, ids: list[str], quiet_s: float, timeout: float) -> dict[str, str]:
    """The ids' states once every one is SUCCESS, or once the SUCCESS count stopped growing for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        states = await chaos.states(ids)
        done = sum(s == "SUCCESS" for s in states.values())
        if done == len(ids):
            return states
        if done != last:
            last, since = done, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return states
        if time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_durable_sends_survive_a_master_kill_mid_drain(chaos_sentinel: Chaos) -> None:
    out = await failover_during_drain(chaos_sentinel, durable=True)
    report("sentinel durable failover mid-drain", **out.facts)
    assert out.lost == [], f"{len(out.lost)} acknowledged durable send(s) lost: {out.lost[:10]}"


@pytest.mark.timeout(120)
async def test_default_sends_through_a_master_kill_mid_drain(chaos_sentinel: Chaos) -> None:
    # not durable: the sends the old master acknowledged but had not replicated are lost; reported
    out = await failover_during_drain(chaos_sentinel, durable=False)
    report("sentinel default (not durable) failover mid-drain", **out.facts)
