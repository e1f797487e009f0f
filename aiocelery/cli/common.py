"""What every subcommand shares: loading the app, argument types, running a coroutine."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from typing import Any

from aiocelery.app import App


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


async def confirm(question: str) -> bool:
    """Ask ``question [y/N]`` on the terminal; no terminal (EOF) or no "y" means no."""
    try:
        answer = await asyncio.to_thread(input, f"{question} [y/N] ")
    except EOFError:  # no terminal: never act without an answer
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        return True
    print()
    return False


def add_app_argument(parser: argparse.ArgumentParser) -> None:
    """The ``-A MODULE[:ATTR]`` option."""
    parser.add_argument("-A", "--app", required=True, metavar="MODULE[:ATTR]",
                        help="the App to use, e.g. proj.tasks:app (ATTR defaults to 'app')")


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
