"""``python -m aiocelery inspect workers|active|registered|stats|ping``: the live workers."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson

from aiocelery.cli.common import add_app_argument, load_app

INSPECT_HELP = """\
Look at the live workers, from the heartbeat records they write every 5 s (a
worker disappears 15 s after its last heartbeat).

  workers     one line per worker: name, host, pid, queues, concurrency, done/failed
  active      the tasks each worker runs now
  registered  the task names each worker knows
  stats       counters per worker
  ping        ask every worker (or --worker NAME) to answer now; exit 0 when at
              least one ready worker answers, 1 otherwise (a liveness probe)
"""


def add_parser(commands: Any) -> None:
    """Register ``inspect``."""
    parser = commands.add_parser("inspect", help="look at the live workers", description=INSPECT_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["workers", "active", "registered", "stats", "ping"])
    add_app_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--worker", default=None, help="only this worker (name or id)")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for ping replies (1)")
    parser.set_defaults(handler=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    """Run one ``inspect`` view."""
    app = load_app(args.app)

    async def main() -> int:
        async with app:
            operations = app.connections.operations
            if args.what == "ping":
                replies = await operations.control("ping", args.worker, args.timeout)
                return _print_ping(replies, args.json)
            workers = [w for w in await operations.workers() if args.worker in (None, w["name"], w["id"])]
            _print_view(args.what, workers, args.json)
            return 0

    return asyncio.run(main())


def _print_ping(replies: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        print(orjson.dumps(replies).decode())
    elif not replies:
        print("no worker answered")
    for r in replies if not as_json else ():
        print(f"{r['worker']} ({r['id']}): {r.get('reply')}{'' if r.get('ready') else ' (NOT ready)'}")
    return 0 if any(r.get("ready") for r in replies) else 1


def _print_view(what: str, workers: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        keys = {"workers": None, "active": ("name", "id", "active"), "registered": ("name", "id", "registered"),
                "stats": ("name", "id", "processed", "failed", "concurrency", "ready", "started")}[what]
        rows = workers if keys is None else [{k: w[k] for k in keys} for w in workers]
        print(orjson.dumps(rows).decode())
        return
    if not workers:
        print("no live workers")
        return
    for w in workers:
        age = time.time() - float(w.get("heartbeat", 0))
        head = f"{w['name']}  {w['host']}:{w['pid']}  id {w['id']}  (heartbeat {age:.0f} s ago)"
        if what == "workers":
            print(f"{head}\n    queues: {', '.join(w['queues'])}  concurrency: {w['concurrency']}  "
                  f"done: {w['processed']}  failed: {w['failed']}  ready: {w['ready']}  version: {w['version']}")
        elif what == "active":
            tasks = w["active"]
            print(head + "".join(f"\n    {t['name']}[{t['id']}] attempt {t['attempt']}" for t in tasks)
                  + ("" if tasks else "\n    (idle)"))
        elif what == "registered":
            print(head + "".join(f"\n    . {name}" for name in w["registered"]))
        else:
            print(f"{head}\n    processed: {w['processed']}  failed: {w['failed']}  started: {w['started']}  "
                  f"concurrency: {w['concurrency']}  running now: {len(w['active'])}")
