"""The Lua scripts, read once from ``brokers/lua`` and called by EVALSHA."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

_LUA = Path(__file__).resolve().parent.parent / "brokers" / "lua"
"""Shipped inside the package (package data), beside ``brokers/redis.py``."""


@dataclass(frozen=True, slots=True)
class Script:
    """A script's text and SHA1 (what EVALSHA names it by)."""

    name: str
    text: str
    sha: str

    @classmethod
    def of(cls, name: str, text: str) -> Script:
        """A script from its text."""
        return cls(name, text, hashlib.sha1(text.encode()).hexdigest())

    @classmethod
    def named(cls, name: str) -> Script:
        """``brokers/lua/<name>.lua``."""
        return cls.of(name, (_LUA / f"{name}.lua").read_text("utf-8"))


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
