"""``python -m aiocelery``: run a worker (more operator commands come with later issues)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from .app import App
from .config import redact_url
from .worker.worker import Worker

log = logging.getLogger("aiocelery")

WORKER_HELP = """\
Run a worker: fetch tasks from the app's queues and run them, N at a time.

async def tasks run on the event loop; plain def tasks run in a thread pool of
the same size. SIGTERM or SIGINT stops fetching, lets running tasks finish for
--grace seconds and hands the rest back to the queue (exit code 0); a second
signal hands them back at once. Exit codes: 0 after a stop (signal, --max-tasks,
--max-memory-mb), 3 when too many thread tasks were stuck (restart it).

examples:
  python -m aiocelery worker -A proj.tasks:app
  python -m aiocelery worker -A proj.tasks:app -c 200 -Q default,emails -n w1@%h
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m aiocelery",
        description="aiocelery: an asyncio-native distributed task queue on Redis.",
    )
    parser.add_argument("--version", action="version", version=f"aiocelery {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    worker = commands.add_parser("worker", help="run a worker", description=WORKER_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    worker.add_argument("-A", "--app", required=True, metavar="MODULE[:ATTR]",
                        help="the App to run, e.g. proj.tasks:app (ATTR defaults to 'app')")
    worker.add_argument("-c", "--concurrency", type=_positive_int, default=10, metavar="N",
                        help="tasks run at once (default: 10)")
    worker.add_argument("-Q", "--queues", default=None, metavar="Q1,Q2",
                        help="comma-separated queues to consume (default: the app's default_queue)")
    worker.add_argument("-n", "--name", default=None,
                        help="worker name shown in logs and task records (default: worker@HOSTNAME; %%h = host)")
    worker.add_argument("--grace", type=float, default=None, metavar="SECONDS",
                        help="seconds running tasks get to finish on SIGTERM (default: Config.shutdown_grace_s)")
    worker.add_argument("--max-tasks", type=_positive_int, default=None, metavar="N",
                        help="drain and exit (code 0) after N tasks, for a supervisor to restart the worker")
    worker.add_argument("--max-memory-mb", type=float, default=None, metavar="MB",
                        help="drain and exit (code 0) once resident memory exceeds MB")
    worker.add_argument("-l", "--loglevel", default="info", choices=["debug", "info", "warning", "error"],
                        help="log level (default: info)")
    worker.add_argument("--no-uvloop", action="store_true", help="use asyncio's default event loop")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def load_app(spec: str) -> App:
    """Import ``module:attr`` (attr defaults to ``app``) and check it is an App."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"error: cannot import {module_name!r} for -A {spec}: {exc}") from None
    app: Any = getattr(module, attr or "app", None)
    if not isinstance(app, App):
        raise SystemExit(f"error: {spec} is not an aiocelery App (found {type(app).__name__}); "
                         "point -A at module:variable holding App(...)")
    return app


def banner(spec: str, worker: Worker, loop_name: str) -> str:
    """The startup summary printed before the worker starts."""
    app = worker.app
    tasks = "\n".join(f"    . {name}" for name in app.registry) or "    (none registered!)"
    return (
        f"aiocelery {__version__} worker {worker.name}\n"
        f"  app:         {spec}\n"
        f"  broker:      {redact_url(app.config.broker)}\n"
        f"  queues:      {', '.join(worker.queues)}\n"
        f"  concurrency: {worker.concurrency} (async tasks on the loop, def tasks in {worker.concurrency} threads)\n"
        f"  loop:        {loop_name}\n"
        f"  tasks:\n{tasks}\n"
    )


def run_worker(args: argparse.Namespace) -> int:
    """The ``worker`` subcommand."""
    logging.basicConfig(level=args.loglevel.upper(), format="[%(asctime)s %(levelname)s %(name)s] %(message)s")
    app = load_app(args.app)
    name = args.name.replace("%h", os.uname().nodename) if args.name else None
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    worker = app.worker(name, concurrency=args.concurrency, queues=queues, shutdown_grace_s=args.grace,
                        max_tasks=args.max_tasks, max_memory_mb=args.max_memory_mb)
    loop_factory, loop_name = _loop_factory(args.no_uvloop)
    print(banner(args.app, worker, loop_name), flush=True)

    async def main() -> None:
        try:
            await worker.run()
        finally:
            await app.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    return worker.exit_code


def _loop_factory(disabled: bool) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    if disabled:
        return None, "asyncio"
    try:
        import uvloop
    except ImportError:
        return None, "asyncio (uvloop not installed)"
    return uvloop.new_event_loop, "uvloop"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aiocelery``."""
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        return run_worker(args)
    return 2
