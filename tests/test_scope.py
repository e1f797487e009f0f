"""RunScope: the plain-asyncio cancel scope around each run (revoke with terminate, lost lease,
hard time limit). It must swallow exactly the cancellation it asked for, nothing else."""

from __future__ import annotations

import asyncio

import pytest

from aiocelery.worker.scope import RunScope


async def loop_passed(when: float) -> None:
    """Return once the loop has run the callbacks due at loop time ``when`` (a timer still armed
    for then has fired: it runs before this later one)."""
    loop = asyncio.get_running_loop()
    passed = loop.create_future()
    loop.call_at(when + 0.001, lambda: passed.done() or passed.set_result(None))
    await passed


async def test_a_deadline_cancels_the_block_and_is_caught() -> None:
    loop = asyncio.get_running_loop()
    with RunScope(loop.time() + 0.02) as scope:
        await asyncio.sleep(5)
    assert scope.cancelled_caught
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(0)  # nothing stray is left pending on this task


async def test_a_block_that_ends_in_time_is_not_cancelled() -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.2
    with RunScope(deadline) as scope:
        await asyncio.sleep(0.01)
    assert not scope.cancelled_caught
    await loop_passed(deadline)  # the timer was cancelled with the block: no CancelledError lands here


async def test_cancel_from_elsewhere_and_before_entering() -> None:
    scope = RunScope()

    entered = asyncio.Event()

    async def run() -> bool:
        with scope:
            entered.set()
            await asyncio.sleep(5)
        return scope.cancelled_caught

    task = asyncio.get_running_loop().create_task(run())
    await entered.wait()  # it waits inside the block
    scope.cancel()
    assert await task is True

    early = RunScope()
    early.cancel()  # asked before the block starts: it is cancelled at its first await
    with early:
        await asyncio.sleep(5)
    assert early.cancelled_caught


async def test_cancel_after_the_block_does_nothing() -> None:
    scope = RunScope()
    with scope:
        await asyncio.sleep(0)
    scope.cancel()
    await asyncio.sleep(0)  # a task.cancel() lands at the task's next suspension: none lands here
    assert not scope.cancelled_caught


async def test_an_outside_cancellation_goes_through_even_when_the_scope_fired_too() -> None:
    """The worker's shutdown cancels the consumer while a revoke cancels the run: the scope
    must not swallow the shutdown."""
    scope = RunScope()
    reached_after = False

    entered = asyncio.Event()

    async def run() -> None:
        nonlocal reached_after
        with scope:
            entered.set()
            await asyncio.sleep(5)
        reached_after = True

    task = asyncio.get_running_loop().create_task(run())
    await entered.wait()  # it waits inside the block
    scope.cancel()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not reached_after


async def test_nested_scopes_each_catch_their_own() -> None:
    loop = asyncio.get_running_loop()
    outer = RunScope()
    with outer:
        with RunScope(loop.time() + 0.01) as inner:  # the time limit inside a run's scope
            await asyncio.sleep(5)
        assert inner.cancelled_caught and not outer.cancelled_caught
        outer.cancel()
        await asyncio.sleep(5)
    assert outer.cancelled_caught


async def test_the_task_may_be_given_up_front() -> None:
    task = asyncio.current_task()
    assert task is not None
    with RunScope(asyncio.get_running_loop().time() + 0.01, task=task) as scope:
        await asyncio.sleep(5)
    assert scope.cancelled_caught


async def test_outside_a_task_it_says_so() -> None:
    loop = asyncio.get_running_loop()
    raised: asyncio.Future[BaseException | None] = loop.create_future()

    def callback() -> None:  # a loop callback runs outside any task
        try:
            with RunScope():
                pass
        except RuntimeError as exc:
            raised.set_result(exc)
        else:
            raised.set_result(None)

    loop.call_soon(callback)
    assert "inside an asyncio task" in str(await raised)
