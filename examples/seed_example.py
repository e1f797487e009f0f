"""GoCelery's example (from its README), in aiocelery.

Worker side (Machinery's ``GoCeleryRun``): register ``HelloWorld`` and ``Add`` and launch a worker::

    python -m aiocelery worker -A examples.seed_example:app -n worker@localhost -c 10

Client side (Machinery's ``Working``): send ``HelloWorld`` with a typed ``Arg`` and print the result::

    python examples/seed_example.py client

The broker comes from ``AIOCELERY_BROKER`` (default ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiocelery import AMQPConfig, App, Arg, Config, Signature

cnf = Config(
    broker=os.environ.get("AIOCELERY_BROKER", "redis://127.0.0.1:6379/0"),
    result_backend=os.environ.get("AIOCELERY_RESULT_BACKEND") or None,  # required with amqp://: a Redis URL
    default_queue="machinery_tasks",
    key_prefix=os.environ.get("AIOCELERY_KEY_PREFIX", "aiocelery"),
    amqp=AMQPConfig(exchange="machinery_exchange", exchange_type="direct", binding_key="machinery_task"),
)


def HelloWorld(name: str) -> str:  # noqa: N802 - Machinery's task names
    """Machinery's first task: greet in Chinese."""
    return "你好" + name


def Add(a: int, b: int) -> int:  # noqa: N802
    """Machinery's second task: add two int64s."""
    return a + b


app = App(cnf)
app.register_tasks({"Add": Add, "HelloWorld": HelloWorld})


async def go_celery_run() -> None:
    """Machinery's worker program: NewServer, RegisterTasks, NewWorker, Launch."""
    worker = app.worker("worker@localhost", concurrency=10)
    try:
        await worker.run()
    finally:
        await app.close()


async def working() -> list[object]:
    """Machinery's client program: SendTask(HelloWorld("国学大师")), Get, print; plus Add(2, 3)."""
    async with App(cnf) as client:  # the client registers nothing: it sends by name, like GoCelery's client
        signature = Signature("HelloWorld", args=[Arg("string", "国学大师")])
        async_result = await client.send_task(signature)
        res = await async_result.get(timeout=10)
        print("resp:", res, flush=True)
        added = await client.send_task(Signature("Add", args=[Arg("int64", 2), Arg("int64", 3)]))
        total = await added.get(timeout=10)
        print("Add(2, 3):", total, flush=True)
        return [res, total]


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("worker", "client"):
        raise SystemExit("usage: python examples/seed_example.py worker|client")
    asyncio.run(go_celery_run() if sys.argv[1] == "worker" else working())
