"""The Redis broker's Lua scripts, read once from ``lua/`` beside this module (package data)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiocelery._redis.scripts import Script

LUA = Path(__file__).resolve().parent / "lua"
"""Where the scripts live."""


def load_script(name: str) -> Script:
    """``lua/<name>.lua``."""
    return Script(name, (LUA / f"{name}.lua").read_text("utf-8"))


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
