"""Bad input, at the edge and on the wire (docs/delivery.md, failure scenarios 16-19).

Scenario 16 writes task records and stream entries with a plain Redis client, the way a buggy
producer, an old version or a hand edit would, and checks each becomes a dead letter with a
reason while the worker goes on.
"""

from __future__ import annotations

import math
import time
import uuid

import pytest

from aiocelery import App, Config, EncodeError, ResultTimeout, TaskArgumentsError, TaskDead, TaskFailed

from .harness import QUEUE, Chaos, report

# -- 16. undecodable bytes and missing fields ---------------------------------------------------


async def write_record(chaos: Chaos, task_id: str, **fields: bytes | str | int) -> None:
    """A task record as enqueue.lua writes one, with ``fields`` overriding (``<omit>`` leaves a field out)."""
    record: dict[str, bytes | str | int] = {
        "name": "chaos.echo", "queue": QUEUE, "payload": b'{"v":1,"args":[1],"kwargs":{}}', "state": "PENDING",
        "attempt": 0, "crashes": 0, "created_ms": int(time.time() * 1000)}
    record.update(fields)
    await chaos.rds.hset(chaos.task_key(task_id), mapping={k: v for k, v in record.items() if v != b"<omit>"})


async def still_works(chaos: Chaos, worker_pid: int, x: int) -> str:
    """A good task sent after the bad ones is run by the same, still living, worker."""
    result = await chaos.app().send_task("chaos.echo", [x])
    assert await result.get(timeout=10) == x
    [run] = await chaos.runs(result.id)
    assert run.pid == worker_pid
    return result.id


BAD_RECORDS = {
    "payload not JSON": ({"payload": b"\xff\xfe\x00garbage"}, "undecodable payload"),
    "payload missing": ({"payload": b"<omit>"}, "undecodable payload"),
    "payload wrong shape": ({"payload": b'{"v":1,"args":{"a":1}}'}, "undecodable payload"),
    "payload from the future": ({"payload": b'{"v":99,"args":[],"kwargs":{}}'}, "wire version"),
    "name missing": ({"name": b"<omit>"}, "unknown task"),
}


@pytest.mark.timeout(60)
async def test_16_bad_records_and_entries_are_dead_lettered_with_a_reason(chaos: Chaos) -> None:
    [worker] = await chaos.workers(1, concurrency=4)
    ids: dict[str, str] = {}
    for case, (fields, _) in BAD_RECORDS.items():
        task_id = f"bad-{uuid.uuid4()}"
        ids[case] = task_id
        await write_record(chaos, task_id, **fields)
        await chaos.rds.xadd(chaos.stream, {"id": task_id})
    orphan = f"orphan-{uuid.uuid4()}"
    await chaos.rds.xadd(chaos.stream, {"id": orphan})  # an entry whose record does not exist
    await chaos.rds.xadd(chaos.stream, {"junk": "no id field"})  # an entry without the id field

    states = await chaos.wait_states(list(ids.values()), {"DEAD"}, timeout=15)
    assert set(states.values()) == {"DEAD"}
    await chaos.assert_drained()
    letters = await chaos.dead_letters()
    by_id = {d["id"]: d for d in letters}
    for case, (_, reason) in BAD_RECORDS.items():
        letter = by_id[ids[case]]
        assert reason in letter.get("reason", "") + letter.get("error", ""), (case, letter)
        assert reason in (await chaos.record(ids[case]))["reason"], case
    assert by_id[orphan]["reason"] == "task record missing"
    assert by_id[""]["reason"] == "task record missing"
    assert len(letters) == len(BAD_RECORDS) + 2
    good = await still_works(chaos, worker.pid, 16)
    assert worker.popen.poll() is None
    stats = await chaos.verify([good])
    report("16 bad records and entries", dead_letters=len(letters), **stats.__dict__)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["entry id", "record name"])
async def test_16_non_utf8_bytes_are_dead_lettered_alone(chaos: Chaos, where: str) -> None:
    app = chaos.app()
    bad_id = f"bad-{uuid.uuid4()}"
    await chaos.rds.xgroup_create(chaos.stream, "aiocelery", id="0", mkstream=True)
    if where == "entry id":
        await chaos.rds.xadd(chaos.stream, {"id": b"\xff\xfe-" + bad_id.encode()})
    else:
        await write_record(chaos, bad_id, name=b"\xff\xfe")
        await chaos.rds.xadd(chaos.stream, {"id": bad_id})
    good = await chaos.send_many(app, "chaos.echo", [[i] for i in range(5)])  # same stream, same batch
    [worker] = await chaos.workers(1, concurrency=8)
    try:
        values = await chaos.results(good, timeout=3 * 2.0, watch=[worker])  # 3 leases
    except TaskDead as exc:
        raise AssertionError(f"a good task in the bad one's batch was dead-lettered: {exc}") from None
    except ResultTimeout as exc:
        raise AssertionError(f"the good tasks in the bad one's batch starve: {exc}\n{worker.describe()}") from None
    assert values == list(range(5))
    letters = await chaos.dead_letters()
    assert len(letters) == 1, letters
    assert "crashed" not in letters[0]["reason"], letters  # nothing crashed: the bytes are bad
    assert worker.popen.poll() is None
    await still_works(chaos, worker.pid, 16)


# -- 17. unknown task name ----------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_17_unknown_task_name_is_dead_lettered_and_get_names_it(chaos: Chaos) -> None:
    [worker] = await chaos.workers(1, concurrency=4)
    app = chaos.app()
    result = await app.send_task("chaos.no_such_task", [1, 2])
    with pytest.raises(TaskDead) as info:
        await result.get(timeout=15)
    assert "chaos.no_such_task" in str(info.value)
    assert info.value.task_name == "chaos.no_such_task"
    [letter] = await chaos.dead_letters()
    assert letter["id"] == result.id and letter["name"] == "chaos.no_such_task"
    assert "chaos.no_such_task" in letter["reason"], letter
    assert await chaos.runs(result.id) == []
    good = await still_works(chaos, worker.pid, 17)
    await chaos.verify([result.id], state="DEAD", min_runs=0, max_runs=0)
    await chaos.verify([good])
    report("17 unknown task name", reason=repr(letter["reason"][:80]))


# -- 18/19. arguments that don't bind, lossy values: errors at send, nothing written -------------


@pytest.mark.timeout(60)
async def test_18_19_bad_arguments_fail_at_send_and_write_nothing(chaos: Chaos) -> None:
    async with App(Config(broker=chaos.broker.url, key_prefix=chaos.prefix, max_payload_bytes=1024)) as app:
        @app.task(name="chaos.echo")
        async def echo(x: object) -> object:
            return x

        bad_binds = [((), {}), ((1, 2), {}), ((), {"y": 1})]
        for args, kwargs in bad_binds:
            with pytest.raises(TaskArgumentsError, match=r"chaos\.echo"):
                await app.send_task("chaos.echo", list(args), kwargs)
        lossy = [{1, 2}, b"bytes", math.nan, math.inf, 2**64, {1: "int key"}, "x" * 2048]
        for value in lossy:
            with pytest.raises(EncodeError, match=r"chaos\.echo"):
                await echo.delay(value)
    keys = [k async for k in chaos.rds.scan_iter(match=f"{chaos.prefix}:*")]
    assert keys == [], keys  # nothing was written, not even a stream
    report("18/19 bad arguments at send", refused=len(bad_binds) + len(lossy), keys_written=0)


@pytest.mark.timeout(60)
async def test_18_by_name_send_with_bad_arguments_fails_once_without_retries(chaos: Chaos) -> None:
    await chaos.workers(1, concurrency=4)
    app = chaos.app()  # does not register chaos.echo: the arguments can't be checked at send time
    result = await app.send_task("chaos.echo", [1, 2, 3])
    with pytest.raises(TaskFailed) as info:
        await result.get(timeout=15)
    assert info.value.exc_type == "TaskArgumentsError"
    assert "chaos.echo" in str(info.value)
    record = await chaos.record(result.id)
    assert (record["state"], record["attempt"]) == ("FAILURE", "1"), record
    assert await chaos.runs(result.id) == []  # the body never ran
    await chaos.verify([result.id], state="FAILURE", min_runs=0, max_runs=0)
    report("18 by-name bad arguments", attempts=record["attempt"], exc_type=info.value.exc_type)
