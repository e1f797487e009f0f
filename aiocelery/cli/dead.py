"""``python -m aiocelery dead list|show|requeue|purge``: inspect and recover dead letters."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiocelery.app import App
from aiocelery.cli.common import add_app_argument, confirm, load_app, positive_int
from aiocelery.exceptions import DeadLetterError
from aiocelery.wire.records import DeadLetter

DEAD_HELP = """\
Dead letters are tasks that will not run again by themselves: unknown task names,
undecodable messages, tasks that crashed their worker more than max_crashes times.
Each queue has its own dead-letter stream.

examples:
  python -m aiocelery dead list -A proj.tasks:app
  python -m aiocelery dead show -A proj.tasks:app 1732870000000-0
  python -m aiocelery dead requeue -A proj.tasks:app --all     # same task ids, crash counts reset
  python -m aiocelery dead purge -A proj.tasks:app --yes
"""


def add_parser(commands: Any) -> None:
    """Register ``dead`` and its actions."""
    dead = commands.add_parser("dead", help="list, show, requeue or purge dead letters", description=DEAD_HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = dead.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, helptext in (("list", "list dead letters"), ("show", "show one dead letter in full"),
                           ("requeue", "send dead-lettered tasks back to their queue"),
                           ("purge", "delete dead letters")):
        action = actions.add_parser(name, help=helptext)
        add_app_argument(action)
        action.add_argument("-Q", "--queue", default=None, help="the queue (default: the app's default_queue)")
        if name == "list":
            action.add_argument("-n", "--limit", type=positive_int, default=100, help="at most this many (100)")
        if name in ("show", "requeue"):
            action.add_argument("entry", nargs="?", help="the dead letter's entry id (or the task id)")
        if name == "requeue":
            action.add_argument("--all", action="store_true", help="requeue every dead letter of the queue")
        if name == "purge":
            action.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        action.set_defaults(handler=run_dead)


def run_dead(args: argparse.Namespace) -> int:
    """Run one ``dead`` action."""
    app = load_app(args.app)
    queue = args.queue or app.config.default_queue
    actions: dict[str, Callable[[App, str, argparse.Namespace], Awaitable[int]]] = {
        "list": _list, "show": _show, "requeue": _requeue, "purge": _purge}

    async def main() -> int:
        async with app:
            return await actions[args.action](app, queue, args)

    return asyncio.run(main())


async def _list(app: App, queue: str, args: argparse.Namespace) -> int:
    letters = await app.connections.operations.dead_letters(queue, args.limit)
    if not letters:
        print(f"no dead letters in queue {queue!r}")
        return 0
    print(f"{'ENTRY':<18} {'TIME (UTC)':<19} {'TASK':<24} {'ID':<36} REASON")
    for d in letters:
        print(f"{d.entry_id:<18} {_time(d.time_ms):<19} {d.name[:24]:<24} {d.task_id:<36} {d.reason}")
    return 0


async def _show(app: App, queue: str, args: argparse.Namespace) -> int:
    letter = await _find(app, queue, args.entry)
    if letter is None:
        return 1
    print(f"entry:  {letter.entry_id}\ntask:   {letter.name}\nid:     {letter.task_id}\n"
          f"time:   {_time(letter.time_ms)} UTC\nworker: {letter.worker}\nreason: {letter.reason}")
    if letter.error is not None:
        print(f"error:  {letter.error.type}: {letter.error.message}")
        if letter.error.traceback:
            print(letter.error.traceback)
    return 0


async def _requeue(app: App, queue: str, args: argparse.Namespace) -> int:
    if args.all:
        targets = await app.connections.operations.dead_letters(queue, 1_000_000)
    else:
        letter = await _find(app, queue, args.entry)
        if letter is None:
            return 1
        targets = [letter]
    failed = 0
    for letter in targets:
        try:
            await app.connections.operations.requeue_dead(queue, letter.entry_id)
            print(f"requeued {letter.name}[{letter.task_id}]")
        except DeadLetterError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
    return 1 if failed else 0


async def _purge(app: App, queue: str, args: argparse.Namespace) -> int:
    if not args.yes:
        count = (await app.connections.operations.queue_stats(queue)).dead
        if not await confirm(f"delete {count} dead letter(s) of queue {queue!r}?"):
            print("nothing deleted")
            return 1
    print(f"deleted {await app.connections.operations.purge_dead(queue)} dead letter(s) of queue {queue!r}")
    return 0


async def _find(app: App, queue: str, key: str | None) -> DeadLetter | None:
    if not key:
        print("error: name a dead letter by its entry id or task id (see `dead list`)", file=sys.stderr)
        return None
    for letter in await app.connections.operations.dead_letters(queue, 1_000_000):
        if key in (letter.entry_id, letter.task_id):
            return letter
    print(f"error: no dead letter {key!r} in queue {queue!r} (see `dead list`)", file=sys.stderr)
    return None


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
