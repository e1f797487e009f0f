"""The broker's Lua scripts, loaded once from ``brokers/lua`` and called by EVALSHA."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from redis.commands.core import AsyncScript

from .client import Client


def _text(name: str) -> str:
    return resources.files("aiocelery.brokers").joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class Scripts:
    """Registered scripts; each reloads itself on NOSCRIPT (e.g. after a Redis restart)."""

    enqueue: AsyncScript
    begin: AsyncScript
    settle: AsyncScript
    release: AsyncScript
    promote: AsyncScript
    requeue: AsyncScript
    revoke: AsyncScript
    periodic: AsyncScript
    chord_open: AsyncScript

    @classmethod
    def register(cls, client: Client) -> Scripts:
        """Register every script with ``client``."""
        names = ("enqueue", "begin", "settle", "release", "promote", "requeue", "revoke", "periodic", "chord_open")
        return cls(**{name: client.register_script(_text(name)) for name in names})
