"""Task states and their order.

PENDING ─► STARTED ─► SUCCESS | FAILURE | DEAD | REVOKED, with RETRY between STARTED attempts.
A state in ``READY_STATES`` is terminal: it never changes again and ``get()`` returns or raises.
"""

from __future__ import annotations

from typing import Final

PENDING: Final = "PENDING"
"""Sent and waiting in the queue (or in the delayed set) for a worker."""
STARTED: Final = "STARTED"
"""A worker is running it now."""
RETRY: Final = "RETRY"
"""An attempt failed and another one is scheduled."""
SUCCESS: Final = "SUCCESS"
"""Finished; the return value is stored."""
FAILURE: Final = "FAILURE"
"""Raised an exception that is not retried; type, message and traceback are stored."""
DEAD: Final = "DEAD"
"""Dead-lettered: unknown task, undecodable message, or it crashed its worker too often."""
REVOKED: Final = "REVOKED"
"""Cancelled before or while running; it never runs again."""

DEFER: Final = "DEFER"
"""Not a stored state: a settlement that puts a started task back (rate limit, concurrency cap)."""

READY_STATES: Final = frozenset({SUCCESS, FAILURE, DEAD, REVOKED})
"""States that are final."""
ALL_STATES: Final = frozenset({PENDING, STARTED, RETRY, SUCCESS, FAILURE, DEAD, REVOKED})
"""Every state a task record can be in."""
