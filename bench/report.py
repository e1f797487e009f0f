"""The results table: medians with min-max per library, and aiocelery against the best peer."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path

Results = dict[str, dict[str, list[float]]]
"""library -> metric key -> one value per repeat."""


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: str | None
    """'higher', 'lower', or None for a row shown for information (no ratio)."""
    digits: int
    workload: str


METRICS = (
    Metric("w1_enqueue", "W1 enqueue, one by one (tasks/s)", "higher", 0, "W1"),
    Metric("w1_drain", "W1 drain, 1 worker -c 100 (tasks/s)", "higher", 0, "W1"),
    Metric("w2_p50", "W2 round trip p50 (ms)", "lower", 2, "W2"),
    Metric("w2_p95", "W2 round trip p95 (ms)", "lower", 2, "W2"),
    Metric("w2_p99", "W2 round trip p99 (ms)", "lower", 2, "W2"),
    Metric("w2_n", "W2 round trips measured", None, 0, "W2"),
    Metric("w2_errors", "W2 round trips lost (timeout/error, not in the samples)", None, 0, "W2"),
    Metric("w3_wall", "W3 2,000 x sleep(0.1) at -c 500, wall (s; ideal 0.4)", "lower", 2, "W3"),
    Metric("w4_rss", "W4 worker peak RSS in W1 (MiB)", "lower", 1, "W1"),
    Metric("w5_worker_cpu", "W5 worker CPU per 1k tasks (s)", "lower", 3, "W1"),
    Metric("w5_redis_cpu", "W5 Redis CPU per 1k tasks (s)", "lower", 3, "W1"),
    Metric("w5_commands", "W5 Redis commands per task", "lower", 1, "W1"),
    Metric("w6_bulk", "W6 bulk enqueue (tasks/s)", "higher", 0, "W6"),
    Metric("w7_concurrent", "W7 enqueue, 1,000 concurrent sends (tasks/s)", "higher", 0, "W7"),
)
HOME = "aiocelery"


def _fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _cell(values: list[float], digits: int, runs: int) -> str:
    short = f" [{len(values)} of {runs} runs]" if len(values) < runs else ""
    if len(values) == 1:
        return _fmt(values[0], digits) + short
    middle = statistics.median(values)
    return f"{_fmt(middle, digits)} ({_fmt(min(values), digits)}-{_fmt(max(values), digits)}){short}"


def _ratio(results: Results, metric: Metric, peers: list[str]) -> str:
    home = results.get(HOME, {}).get(metric.key)
    scored = [(statistics.median(v), p) for p in peers if (v := results.get(p, {}).get(metric.key))]
    if metric.better is None or not home or not scored:
        return ""
    best, who = max(scored) if metric.better == "higher" else min(scored)
    if best == 0:
        return ""
    return f"{statistics.median(home) / best:.2f}x vs {who} ({metric.better} is better)"


def rows(results: Results, libs: list[str], failed: dict[str, set[str]], workloads: list[str],
         runs: int) -> list[list[str]]:
    """Header + one row per metric of the workloads run (``runs``: the repeats asked for)."""
    peers = [lib for lib in libs if lib != HOME]
    header = ["metric", *libs] + (["aiocelery / best peer"] if peers else [])
    table = [header]
    for metric in METRICS:
        if metric.workload not in workloads:
            continue
        row = [metric.label]
        for lib in libs:
            values = results.get(lib, {}).get(metric.key)
            row.append(_cell(values, metric.digits, runs) if values else
                       "failed" if metric.workload in failed.get(lib, set()) else "n/a")
        if peers:
            row.append(_ratio(results, metric, peers))
        table.append(row)
    return table


def render_text(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "|".join(["---"] + ["---:"] * (len(table[0]) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(redis_version: str) -> str:
    return (f"{os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, Redis {redis_version} (persistence off)")
