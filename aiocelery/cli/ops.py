"""Queue and task commands: ``queues``, ``status``, ``purge``, ``revoke``, ``control``."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson

from aiocelery.cli.common import add_app_argument, confirm, load_app
from aiocelery.exceptions import ResultNotFound


def add_parsers(commands: Any) -> None:
    """Register ``queues``, ``status``, ``purge``, ``revoke`` and ``control``."""
    queues = commands.add_parser("queues", help="length, running, delayed, dead and oldest wait per queue")
    add_app_argument(queues)
    queues.add_argument("-Q", "--queues", default=None, help="comma-separated (default: the app's default_queue)")
    queues.add_argument("--json", action="store_true")
    queues.set_defaults(handler=lambda a: _run(a, _queues))

    status = commands.add_parser("status", help="one task's state, attempts, worker, times and error")
    add_app_argument(status)
    status.add_argument("task_id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=lambda a: _run(a, _status))

    purge = commands.add_parser("purge", help="drop every waiting and delayed task of a queue")
    add_app_argument(purge)
    purge.add_argument("queue")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(handler=lambda a: _run(a, _purge))

    revoke = commands.add_parser("revoke", help="revoke a task (never runs; --terminate cancels a running one)")
    add_app_argument(revoke)
    revoke.add_argument("task_id")
    revoke.add_argument("--terminate", action="store_true")
    revoke.set_defaults(handler=lambda a: _run(a, _revoke))

    control = commands.add_parser("control", help="tell workers to shut down, or ping them")
    control.add_argument("command", choices=["shutdown", "ping"])
    add_app_argument(control)
    control.add_argument("--worker", default=None, help="only this worker (name or id)")
    control.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for replies (1)")
    control.set_defaults(handler=lambda a: _run(a, _control))


def _run(args: argparse.Namespace, action: Any) -> int:
    app = load_app(args.app)

    async def main() -> int:
        async with app:
            code: int = await action(app, args)
            return code

    return asyncio.run(main())


async def _queues(app: Any, args: argparse.Namespace) -> int:
    names = [q.strip() for q in (args.queues or app.config.default_queue).split(",") if q.strip()]
    stats = [await app.connections.operations.queue_stats(q) for q in names]
    if args.json:
        print(orjson.dumps([_asdict(s) for s in stats]).decode())
        return 0
    print(f"{'QUEUE':<24} {'WAITING':>8} {'RUNNING':>8} {'DELAYED':>8} {'DEAD':>6}  OLDEST WAITING")
    for s in stats:
        oldest = "-" if s.oldest_waiting_s is None else f"{s.oldest_waiting_s:.1f} s"
        print(f"{s.queue:<24} {s.waiting:>8} {s.running:>8} {s.delayed:>8} {s.dead:>6}  {oldest}")
    return 0


async def _status(app: Any, args: argparse.Namespace) -> int:
    try:
        r = await app.AsyncResult(args.task_id).record()
    except ResultNotFound as exc:
        print(f"error: {exc}")
        return 1
    data = {"id": r.id, "name": r.name, "queue": r.queue, "state": r.state, "attempt": r.attempt,
            "worker": r.worker, "created": _time(r.created_ms), "started": _time(r.started_ms),
            "done": _time(r.done_ms), "reason": r.reason,
            "error": None if r.error is None else f"{r.error.type}: {r.error.message}"}
    if args.json:
        print(orjson.dumps(data).decode())
    else:
        for key, value in data.items():
            if value not in (None, ""):
                print(f"{key + ':':<9} {value}")
        if r.error is not None and r.error.traceback:
            print(r.error.traceback)
    return 0


async def _purge(app: Any, args: argparse.Namespace) -> int:
    operations = app.connections.operations
    if not args.yes:
        stats = await operations.queue_stats(args.queue)
        if not await confirm(f"drop {stats.waiting} waiting and {stats.delayed} delayed task(s) of {args.queue!r}?"):
            print("nothing purged")
            return 1
    print(f"purged {await operations.purge(args.queue)} task(s) from {args.queue!r} (they end REVOKED, reason purged)")
    return 0


async def _revoke(app: Any, args: argparse.Namespace) -> int:
    try:
        state = await app.revoke(args.task_id, terminate=args.terminate)
    except ResultNotFound as exc:
        print(f"error: {exc}")
        return 1
    print(f"task {args.task_id} is {state}" + (" (its worker was told to cancel it)" if state == "STARTED"
                                                and args.terminate else ""))
    return 0


async def _control(app: Any, args: argparse.Namespace) -> int:
    replies = await app.connections.operations.control(args.command, args.worker, args.timeout)
    for r in replies:
        print(f"{r['worker']} ({r['id']}): {r.get('reply') or r.get('error')}")
    if not replies:
        print("no worker answered")
    return 0 if replies else 1


def _time(ms: int) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") if ms else None


def _asdict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}
