"""``python -m aiocelery``: the command line (worker, beat, dead, inspect, queues, status, purge, revoke,
control)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiocelery._version import __version__
from aiocelery.cli import beat, dead, inspect, ops, worker
from aiocelery.exceptions import AioCeleryError


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m aiocelery",
        description="aiocelery: an asyncio-native distributed task queue on Redis.",
    )
    parser.add_argument("--version", action="version", version=f"aiocelery {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    worker.add_parser(commands)
    dead.add_parser(commands)
    beat.add_parser(commands)
    inspect.add_parser(commands)
    ops.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aiocelery``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except AioCeleryError as exc:  # every message says what went wrong and what to do
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code
