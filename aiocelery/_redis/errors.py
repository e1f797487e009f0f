"""What aiocelery's own Redis client raises.

A lost or refused connection is a builtin ``ConnectionError`` and a silent one a builtin
``TimeoutError`` (both ``OSError``), so retry loops need no Redis-specific except clauses.
"""

from __future__ import annotations


class RedisError(Exception):
    """Base of every error the Redis client raises."""


class ReplyError(RedisError):
    """An error reply from Redis (``NOSCRIPT ...``, ``NOGROUP ...``, ``WRONGTYPE ...``)."""

    @property
    def code(self) -> str:
        """The reply's first word: ``NOSCRIPT``, ``NOGROUP``, ``BUSYGROUP``, ``ERR``..."""
        text = str(self.args[0]) if self.args else ""
        return text.split(" ", 1)[0]


class RedisConnectionError(RedisError, ConnectionError):
    """The connection could not be made, or was lost with replies outstanding."""


class RedisRefused(RedisConnectionError):
    """The server refused the connection in a way retrying cannot mend: its TLS certificate is not
    trusted, or AUTH or SELECT failed. Raised at once, never retried."""


class RedisTimeoutError(RedisError, TimeoutError):
    """No reply within the socket timeout: the connection was dropped."""


class ProtocolError(RedisConnectionError):
    """Redis sent bytes that are not RESP: the connection was dropped."""


class NotReplicated(RedisError):
    """A write reached fewer replicas than asked for (``WAIT``) within its time: it is on the
    master, and a failover before it reaches a replica may lose it."""
