"""When a worker drains and exits by itself, for its supervisor to start a fresh one."""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RecycleLimits:
    """``max_tasks``: tasks before a restart; ``max_memory_mb``: resident memory before a restart;
    ``max_stuck_threads``: abandoned thread tasks still running before the worker calls itself
    unhealthy and exits with ``EXIT_UNHEALTHY``."""

    max_tasks: int | None = None
    max_memory_mb: float | None = None
    max_stuck_threads: int = 10

    EXIT_UNHEALTHY = 3
    """Exit code of a worker that stopped because too many thread tasks were stuck."""

    def exceeded(self, processed: int, stuck_threads: int) -> str:
        """Why the worker should drain now, or '' to go on."""
        if self.max_tasks is not None and processed >= self.max_tasks:
            return f"processed {processed} tasks (max_tasks {self.max_tasks})"
        if self.unhealthy(stuck_threads):
            return f"{stuck_threads} thread tasks are stuck (max_stuck_threads {self.max_stuck_threads})"
        if self.max_memory_mb is not None and processed % 32 == 0:
            rss = rss_mb()
            if rss > self.max_memory_mb:
                return f"resident memory {rss:.0f} MiB (max_memory_mb {self.max_memory_mb:g})"
        return ""

    def unhealthy(self, stuck_threads: int) -> bool:
        """True when too many abandoned thread tasks still run."""
        return stuck_threads > self.max_stuck_threads


def rss_mb() -> float:
    """The process's current resident set size in MiB (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024
