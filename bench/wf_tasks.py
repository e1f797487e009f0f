"""Tasks for bench/workflows.py (``-A bench.wf_tasks:app``)."""

from __future__ import annotations

from aiocelery import App, Config

app = App(Config.from_env())


@app.task(name="wf.noop")
async def noop(x: int) -> int:
    """Return the argument."""
    return x


@app.task(name="wf.total")
async def total(xs: list[int]) -> int:
    """Sum a chord's results."""
    return sum(xs)
