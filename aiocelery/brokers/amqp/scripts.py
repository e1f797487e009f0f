"""The RabbitMQ broker's Lua scripts (on the Redis that holds task records), read once from
``lua/`` beside this module, each after the Redis broker's prelude."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiocelery._redis.scripts import Script
from aiocelery.brokers.redis.scripts import load_script

AMQP_LUA = Path(__file__).resolve().parent / "lua"
"""Where the scripts live."""


@dataclass(frozen=True, slots=True)
class AmqpScripts:
    """begin, claim, unclaim, release (renew: ``leases.py``)."""

    begin: Script
    claim: Script
    unclaim: Script
    release: Script

    @classmethod
    def load(cls) -> AmqpScripts:
        """Read every script."""
        return cls(**{name: load_script(name, AMQP_LUA) for name in ("begin", "claim", "unclaim", "release")})
