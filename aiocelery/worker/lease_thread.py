"""The lease thread: renews every running delivery's lease every ``lease_s / 3`` from outside the loop.

A lost lease (another worker reclaimed the delivery, or the task was settled elsewhere) is
reported back to the loop, which cancels the local run: its outcome would be fenced out anyway.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from aiocelery.brokers.base import LeaseKeeper
from aiocelery.wire.records import Delivery

log = logging.getLogger("aiocelery.worker")


class LeaseThread:
    """Holds the running deliveries and renews their leases in a daemon thread."""

    def __init__(self, keeper: LeaseKeeper, lease_s: float, loop: asyncio.AbstractEventLoop,
                 on_lost: Callable[[str], None]) -> None:
        self._keeper = keeper
        self._interval = lease_s / 3
        self._lease_s = lease_s
        self._loop = loop
        self._on_lost = on_lost
        self._held: dict[str, Delivery] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aiocelery-leases", daemon=True)
        self.last_ok = time.monotonic()
        """Monotonic time of the last renewal pass that reached Redis."""
        self.outage_since: float | None = None
        """Set while renewals fail; a worker reclaims nobody's work until they succeed again."""
        self._recovered_at: float | None = None

    def start(self) -> None:
        """Start renewing."""
        self._thread.start()

    def hold(self, d: Delivery) -> None:
        """Renew ``d`` from now on."""
        with self._lock:
            self._held[d.entry_id] = d

    def drop(self, d: Delivery) -> None:
        """Stop renewing ``d`` (settled or released)."""
        with self._lock:
            self._held.pop(d.entry_id, None)

    @property
    def healthy(self) -> bool:
        """True when renewals reach Redis, and after an outage have for one interval: every worker
        then had its turn to renew its own leases before anyone reclaims expired-looking ones."""
        if self.outage_since is not None:
            return False
        return self._recovered_at is None or time.monotonic() - self._recovered_at >= self._interval

    def stop(self) -> None:
        """Stop the thread (it finishes its current pass) and close the connection."""
        self._stop.set()
        self._thread.join(timeout=self._interval + 6)
        self._keeper.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.renew_now()

    def renew_now(self) -> None:
        """One renewal pass (also called right after an outage, before reclaiming)."""
        with self._lock:
            held = list(self._held.values())
        try:
            lost = self._keeper.renew(held) if held else []
        except Exception as exc:
            if self.outage_since is None:
                self.outage_since = time.monotonic()
            log.warning("lease renewal failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, self._interval)
            return
        if self.outage_since is not None:
            log.warning("lease renewal works again after %.1f s", time.monotonic() - self.outage_since)
            self._recovered_at = time.monotonic()
        self.outage_since = None
        self.last_ok = time.monotonic()
        for entry_id in lost:
            self._loop.call_soon_threadsafe(self._on_lost, entry_id)
