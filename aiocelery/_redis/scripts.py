"""The Lua scripts, read once from ``brokers/lua``; the clients load each into Redis (SCRIPT LOAD
says its SHA1) and call it by EVALSHA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_LUA = Path(__file__).resolve().parent.parent / "brokers" / "lua"
"""Shipped inside the package (package data), beside ``brokers/redis.py``."""


@dataclass(frozen=True, slots=True)
class Script:
    """A script's name (for errors) and text."""

    name: str
    text: str

    @classmethod
    def named(cls, name: str) -> Script:
        """``brokers/lua/<name>.lua``."""
        return cls(name, (_LUA / f"{name}.lua").read_text("utf-8"))


@dataclass(frozen=True, slots=True)
class Scripts:
    """The broker's scripts; the client reloads one on NOSCRIPT (e.g. after a Redis restart)."""

    enqueue: Script
    begin: Script
    settle: Script
    release: Script
    promote: Script
    requeue: Script
    revoke: Script
    periodic: Script
    chord_open: Script

    @classmethod
    def load(cls) -> Scripts:
        """Read every script."""
        names = ("enqueue", "begin", "settle", "release", "promote", "requeue", "revoke", "periodic", "chord_open")
        return cls(**{name: Script.named(name) for name in names})
