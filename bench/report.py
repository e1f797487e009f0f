"""The results tables: medians with min-max per library, and aiocelery against the best peer.

One table per broker section: Redis (aiocelery against arq, saq, taskiq, streaq, celery) and
RabbitMQ (aiocelery-amqp against celery-amqp and dramatiq-amqp, results in Redis), each with its
own "aiocelery / best peer" column; the RabbitMQ section is also checked against its goals (``GOALS``).
"""

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
    brokers: tuple[str, ...] = ("redis", "amqp")
    """The sections that show the row."""


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
    Metric("w5_rabbitmq_cpu", "W5 RabbitMQ CPU per 1k tasks (s)", "lower", 3, "W1", ("amqp",)),
    Metric("w5_commands", "W5 Redis commands per task", "lower", 1, "W1"),
    Metric("w6_bulk", "W6 bulk enqueue (tasks/s)", "higher", 0, "W6"),
    Metric("w7_concurrent", "W7 enqueue, 1,000 concurrent sends (tasks/s)", "higher", 0, "W7"),
)
HOME = "aiocelery"
HOMES = {"redis": HOME, "amqp": "aiocelery-amqp"}
"""The library whose ratio each section's last column shows."""
SECTIONS = {"redis": "Redis (broker and results)", "amqp": "RabbitMQ (broker; results in Redis)"}


@dataclass(frozen=True)
class Goal:
    """A target for a section's home library: its metric against a bound, or against a peer's median."""

    key: str
    text: str
    bound: float
    better: str
    """'higher' or 'lower'."""
    versus: str | None = None
    """A peer: the bound is then a ratio of the home's median to that peer's."""


GOALS = {"amqp": (
    Goal("w1_drain", "W1 drain >= 5,000 tasks/s", 5_000, "higher"),
    Goal("w1_drain", "W1 drain >= 5x Celery on RabbitMQ", 5.0, "higher", versus="celery-amqp"),
    Goal("w2_p50", "W2 send + get p50 <= 2 ms", 2.0, "lower"),
    Goal("w1_enqueue", "W1 one-by-one send >= 3,000/s", 3_000, "higher"),
)}
"""What the RabbitMQ broker is measured against (the issue's targets)."""


def broker_of(name: str) -> str:
    """``"amqp"`` for a library of the RabbitMQ section (``-amqp`` names), else ``"redis"``."""
    return "amqp" if name.endswith("-amqp") else "redis"


def sections(libs: list[str]) -> list[tuple[str, list[str]]]:
    """The broker sections with libraries in them, in order: ``[(broker, [names])]``."""
    found = [(broker, [lib for lib in libs if broker_of(lib) == broker]) for broker in SECTIONS]
    return [(broker, names) for broker, names in found if names]


def _fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _cell(values: list[float], digits: int, runs: int) -> str:
    short = f" [{len(values)} of {runs} runs]" if len(values) < runs else ""
    if len(values) == 1:
        return _fmt(values[0], digits) + short
    middle = statistics.median(values)
    return f"{_fmt(middle, digits)} ({_fmt(min(values), digits)}-{_fmt(max(values), digits)}){short}"


def _ratio(results: Results, metric: Metric, home_name: str, peers: list[str]) -> str:
    home = results.get(home_name, {}).get(metric.key)
    scored = [(statistics.median(v), p) for p in peers if (v := results.get(p, {}).get(metric.key))]
    if metric.better is None or not home or not scored:
        return ""
    best, who = max(scored) if metric.better == "higher" else min(scored)
    if best == 0:
        return ""
    return f"{statistics.median(home) / best:.2f}x vs {who} ({metric.better} is better)"


def rows(results: Results, libs: list[str], failed: dict[str, set[str]], workloads: list[str],
         runs: int, broker: str = "redis") -> list[list[str]]:
    """Header + one row per metric of the workloads run (``runs``: the repeats asked for), for the
    libraries ``libs`` of one section; the last column is the section's home against its best peer."""
    home = HOMES[broker]
    peers = [lib for lib in libs if lib != home]
    ratio = bool(peers) and home in libs
    header = ["metric", *libs] + ([f"{home} / best peer"] if ratio else [])
    table = [header]
    for metric in METRICS:
        if metric.workload not in workloads or broker not in metric.brokers:
            continue
        row = [metric.label]
        for lib in libs:
            values = results.get(lib, {}).get(metric.key)
            row.append(_cell(values, metric.digits, runs) if values else
                       "failed" if metric.workload in failed.get(lib, set()) else "n/a")
        if ratio:
            row.append(_ratio(results, metric, home, peers))
        table.append(row)
    return table


def goals(results: Results, broker: str, workloads: list[str]) -> list[str]:
    """One line per goal of the section whose workload ran: the home library's median, met or missed."""
    home = HOMES[broker]
    workload_of = {m.key: m.workload for m in METRICS}
    lines = []
    for goal in GOALS.get(broker, ()):
        if workload_of[goal.key] not in workloads:
            continue
        values = results.get(home, {}).get(goal.key)
        if not values:
            lines.append(f"{goal.text}: not measured ({home} did not run)")
            continue
        value = statistics.median(values)
        shown = f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
        if goal.versus is not None:
            other = results.get(goal.versus, {}).get(goal.key)
            if not other:
                lines.append(f"{goal.text}: not measured ({goal.versus} did not run)")
                continue
            value = value / statistics.median(other)
            shown = f"{value:.2f}x"
        met = value >= goal.bound if goal.better == "higher" else value <= goal.bound
        lines.append(f"{goal.text}: {shown} -> {'met' if met else 'MISSED'}")
    return lines


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
