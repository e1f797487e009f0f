"""CPU time and memory of a worker process and its children, read from /proc (Linux)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; the command name may hold spaces and parentheses."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU of ``root``, its live descendants and the children it already reaped."""
    ticks = 0
    for pid in tree(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        if pid == root:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: reaped children
    return ticks / CLOCK_TICKS


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler:
    """Peak memory of a worker: its own VmHWM, or for a process tree the peak sum of PSS.

    One process: the kernel's high-water mark (VmHWM), exact. Several (Celery's prefork pool,
    taskiq's supervisor + worker): resident pages shared between them are counted once through
    PSS, sampled every ``interval_s``.
    """

    def __init__(self, root: int, interval_s: float = 0.25) -> None:
        self.root = root
        self.interval_s = interval_s
        self.peak_tree_kb = 0
        self.max_processes = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        pids = tree(self.root)
        self.max_processes = max(self.max_processes, len(pids))
        if len(pids) > 1:
            self.peak_tree_kb = max(self.peak_tree_kb, sum(_pss_kb(p) for p in pids))

    def stop(self) -> float:
        """Stop sampling; the peak in MB (call while the worker still runs)."""
        self._stop.set()
        self._thread.join()
        self.sample()
        if self.max_processes > 1:
            return self.peak_tree_kb / 1024
        return _status_kb(self.root, "VmHWM") / 1024

    @property
    def kind(self) -> str:
        """How the peak was measured."""
        return f"peak PSS sum of {self.max_processes} processes" if self.max_processes > 1 else "VmHWM"
