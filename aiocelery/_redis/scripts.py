"""A Lua script as the client runs it: loaded once into Redis (SCRIPT LOAD says its SHA1), then
called by EVALSHA, and loaded again on NOSCRIPT (e.g. after a Redis restart)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Script:
    """A script's name (for errors) and text."""

    name: str
    text: str
