"""The Redis broker's Lua scripts, read once from ``lua/`` beside this module (package data)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiocelery._redis.scripts import Script

LUA = Path(__file__).resolve().parent / "lua"
"""Where the scripts live."""

PRELUDE = (LUA / "prelude.lua").read_text("utf-8")
"""What every script shares (server time, the final states, field names): locals only, put
before each script's own text. It ends with a newline, so a script starts on a line of its own."""


def load_script(name: str, directory: Path = LUA) -> Script:
    """``<directory>/<name>.lua`` (this module's ``lua/`` by default) after the prelude, as one
    text (loaded and called by its SHA1). Line numbers in a Redis error count the prelude's lines
    first."""
    return Script(name, PRELUDE + (directory / f"{name}.lua").read_text("utf-8"))


@dataclass(frozen=True, slots=True)
class Scripts:
    """The broker's scripts."""

    enqueue: Script
    begin: Script
    settle: Script
    release: Script
    promote: Script
    revoke: Script
    periodic: Script
    chord_open: Script

    @classmethod
    def load(cls) -> Scripts:
        """Read every script."""
        names = ("enqueue", "begin", "settle", "release", "promote", "revoke", "periodic", "chord_open")
        return cls(**{name: load_script(name) for name in names})
