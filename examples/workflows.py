"""Workflows: Machinery's Chain, Group and Chord, plus link/link_error.

Runs in one process on memory:// (set AIOCELERY_BROKER=redis://... to use Redis):

    python examples/workflows.py
"""

from __future__ import annotations

import asyncio
import os

from aiocelery import App, Config, TaskFailed, chain, chord, group

app = App(Config(broker=os.environ.get("AIOCELERY_BROKER", "memory://"), key_prefix="wf-demo"))


@app.task(name="Add")
def add(a: int, b: int) -> int:
    """Machinery's Add."""
    return a + b


@app.task(name="Multiply")
def multiply(a: int, b: int) -> int:
    """Multiply two numbers."""
    return a * b


@app.task(name="Sum")
async def total(numbers: list[int]) -> int:
    """Sum a list (a chord callback)."""
    return sum(numbers)


@app.task(name="Fail")
async def fail(x: int) -> int:
    """Always raises."""
    raise ValueError(f"cannot handle {x}")


@app.task(name="Report")
async def report(task_id: str, error: dict[str, str]) -> None:
    """An errback: gets the failed task's id and error (Machinery's OnError)."""
    print(f"  errback: task {task_id} failed with {error['type']}: {error['message']}")


async def main() -> None:
    async with app, app.worker(concurrency=10):
        # Machinery: tasks.NewChain(sig1, sig2, sig3) -> (1 + 1) * 5 + 3
        result = await chain(add.s(1, 1), multiply.s(5), add.s(3)).apply_async()
        print("chain:", await result.get(timeout=10))
        print("same with |:", await (await (add.s(1, 1) | multiply.s(5) | add.s(3)).apply_async()).get(timeout=10))

        # Machinery: tasks.NewGroup(sig1, sig2, ...) -> results in order
        numbers = await group(add.s(i, i) for i in range(5)).apply_async()
        print("group:", await numbers.get(timeout=10), "completed:", await numbers.completed_count())

        # Machinery: tasks.NewChord(group, callback) -> the callback once, with every result
        summed = await chord([multiply.s(i, i) for i in range(1, 5)], total.s()).apply_async()
        print("chord:", await summed.get(timeout=10))

        # a group inside a chain feeds its list of results to the next step
        nested = await chain(add.s(2, 2), group(multiply.s(10), multiply.s(100)), total.s()).apply_async()
        print("group inside a chain:", await nested.get(timeout=10))

        # OnSuccess / OnError: link and link_error
        linked = await add.s(20, 22).link(multiply.si(6, 7)).apply_async()
        print("link: parent", await linked.get(timeout=10))

        broken = await chain(add.s(1, 1), fail.s(), add.s(1)).link_error(report.s()).apply_async()
        try:
            await broken.get(timeout=10)
        except TaskFailed as exc:
            print(f"failed chain: {exc.task_name} (id {exc.task_id}) raised {exc.exc_type}: {exc.exc_message}")
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main())
