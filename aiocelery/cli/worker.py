"""``python -m aiocelery worker``: run a worker with a banner, logs and signal handling."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
from collections.abc import Callable
from typing import Any

from aiocelery import logs
from aiocelery._version import __version__
from aiocelery.cli.common import add_app_argument, load_app, positive_int
from aiocelery.config import redact_url
from aiocelery.worker.health import serve_health
from aiocelery.worker.worker import Worker

log = logging.getLogger("aiocelery")

GC_THRESHOLD = 10_000
"""Allocations between two runs of the cyclic garbage collector in a worker (see ``tune_gc``)."""

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


def add_parser(commands: Any) -> None:
    """Register the ``worker`` subcommand."""
    worker = commands.add_parser("worker", help="run a worker", description=WORKER_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_app_argument(worker)
    worker.add_argument("-c", "--concurrency", type=positive_int, default=10, metavar="N",
                        help="tasks run at once (default: 10)")
    worker.add_argument("-Q", "--queues", default=None, metavar="Q1,Q2",
                        help="comma-separated queues to consume (default: the app's default_queue)")
    worker.add_argument("-n", "--name", default=None,
                        help="worker name shown in logs and task records (default: worker@HOSTNAME; %%h = host)")
    worker.add_argument("--grace", type=float, default=None, metavar="SECONDS",
                        help="seconds running tasks get to finish on SIGTERM (default: Config.shutdown_grace_s)")
    worker.add_argument("--max-tasks", type=positive_int, default=None, metavar="N",
                        help="drain and exit (code 0) after N tasks, for a supervisor to restart the worker")
    worker.add_argument("--max-memory-mb", type=float, default=None, metavar="MB",
                        help="drain and exit (code 0) once resident memory exceeds MB")
    worker.add_argument("-l", "--loglevel", default="info", choices=["debug", "info", "warning", "error"],
                        help="log level (default: info)")
    worker.add_argument("--without-beat", action="store_true",
                        help="do not run the periodic scheduler in this worker (it is safe to run it in all)")
    worker.add_argument("--log-format", choices=["text", "json"], default="text",
                        help="text, or one JSON object per line; task id, name, attempt and worker are in "
                             "every record logged while a task runs")
    worker.add_argument("--health-port", type=int, default=None, metavar="PORT",
                        help="serve GET /live and GET /ready (200 or 503) on this port")
    worker.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help="serve Prometheus metrics on this port (needs: pip install 'aiocelery[prometheus]')")
    worker.add_argument("--no-uvloop", action="store_true", help="use asyncio's default event loop")
    worker.add_argument("--gc-threshold", type=int, default=GC_THRESHOLD, metavar="N",
                        help="after start-up, freeze what start-up allocated and run the cyclic garbage "
                             f"collector every N allocations instead of Python's 700 (default: {GC_THRESHOLD}; "
                             "about 15 %% more tasks/s on no-op tasks); 0 leaves Python's settings alone")
    worker.set_defaults(handler=run_worker)


def banner(spec: str, worker: Worker, loop_name: str) -> str:
    """The startup summary printed before the worker starts."""
    app = worker.app
    tasks = "\n".join(f"    . {name}" for name in app.registry) or "    (none registered!)"
    config = app.config
    results = f"  results:     {redact_url(config.backend_url)}\n" if config.backend_url != config.broker else ""
    return (
        f"aiocelery {__version__} worker {worker.name}\n"
        f"  app:         {spec}\n"
        f"  broker:      {redact_url(app.config.broker)}\n"
        f"{results}"
        f"  queues:      {', '.join(worker.queues)}\n"
        f"  concurrency: {worker.concurrency} (async tasks on the loop, def tasks in {worker.concurrency} threads)\n"
        f"  loop:        {loop_name}\n"
        f"  tasks:\n{tasks}\n"
    )


def run_worker(args: argparse.Namespace) -> int:
    """The ``worker`` subcommand."""
    logs.configure(args.loglevel, args.log_format)
    app = load_app(args.app)
    name = args.name.replace("%h", os.uname().nodename) if args.name else None
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    worker = app.worker(name, concurrency=args.concurrency, queues=queues, shutdown_grace_s=args.grace,
                        max_tasks=args.max_tasks, max_memory_mb=args.max_memory_mb, beat=not args.without_beat)
    loop_factory, loop_name = _loop_factory(args.no_uvloop)
    print(banner(args.app, worker, loop_name), flush=True)
    if args.gc_threshold > 0:
        tune_gc(args.gc_threshold)

    async def main() -> None:
        servers = await _side_servers(args, worker)
        try:
            await worker.run()
        finally:
            for server in servers:
                server.close()
            await app.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    return worker.exit_code


async def _side_servers(args: argparse.Namespace, worker: Worker) -> list[Any]:
    """Health and metrics endpoints asked for on the command line."""
    servers: list[Any] = []
    if args.health_port is not None:
        servers.append(await serve_health(args.health_port, lambda: worker.ready))
        log.info("health: http://0.0.0.0:%d/live and /ready", args.health_port)
    if args.metrics_port is not None:
        try:
            from aiocelery.contrib.prometheus import install
        except ImportError as exc:
            raise SystemExit(f"error: --metrics-port needs prometheus-client: pip install 'aiocelery[prometheus]' "
                             f"({exc})") from None
        servers.append(install(worker.app, args.metrics_port))
        log.info("metrics: http://127.0.0.1:%d/metrics", args.metrics_port)
    return servers


def tune_gc(threshold: int) -> None:
    """Move everything start-up made (modules, the app, its tasks) out of the collector's sight,
    and collect cyclic garbage every ``threshold`` allocations: a worker allocates a few objects
    per task that reference counting frees at once, and Python's default (700) spends a tenth of a
    no-op task's CPU on collections that find nothing. Cyclic garbage still gets collected."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)


def _loop_factory(disabled: bool) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    if disabled:
        return None, "asyncio"
    try:
        import uvloop
    except ImportError:
        return None, "asyncio (uvloop not installed)"
    return uvloop.new_event_loop, "uvloop"
