"""Tasks the benchmarks run; the worker imports this module (``-A bench.tasks:app``)."""

from __future__ import annotations

from aiocelery import App, Config

app = App(Config.from_env())


@app.task(name="noop")
async def noop(x: int) -> int:
    """Return the argument: measures the queue, not the task."""
    return x
