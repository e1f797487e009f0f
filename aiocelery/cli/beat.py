"""``python -m aiocelery beat``: run only the periodic scheduler (workers run one too by default)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from aiocelery import logs
from aiocelery.cli.common import add_app_argument, load_app
from aiocelery.worker.beat import Scheduler

BEAT_HELP = """\
Send the app's periodic tasks (@app.periodic, app.add_periodic) at their fire times.

Any number of schedulers may run at once, here and inside workers: each fire time
becomes one task with an id derived from the entry and the time, so duplicates are
impossible, and time is Redis's, so a skewed local clock does not matter.
SIGTERM/SIGINT stop it (exit 0).
"""


def add_parser(commands: Any) -> None:
    """Register the ``beat`` subcommand."""
    beat = commands.add_parser("beat", help="run the periodic scheduler", description=BEAT_HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_app_argument(beat)
    beat.add_argument("-l", "--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    beat.set_defaults(handler=run_beat)


def run_beat(args: argparse.Namespace) -> int:
    """Run the scheduler until SIGTERM/SIGINT."""
    logs.configure(args.loglevel)
    app = load_app(args.app)
    if not app.periodic_entries:
        raise SystemExit(f"error: {args.app} has no periodic tasks (@app.periodic or app.add_periodic)")
    for entry in app.periodic_entries:
        print(f"  . {entry.name}: {entry.schedule} (missed: {entry.missed.value})", flush=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await Scheduler(app).run()
        finally:
            await app.close()

    asyncio.run(main())
    return 0
