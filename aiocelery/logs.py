"""Structured logging: every record logged while a task runs names the task, its id, attempt
and worker; ``--log-format json`` writes one JSON object per line.

    log = get_task_logger(__name__)

    @app.task
    async def charge(order: int) -> None:
        log.info("charging %s", order)   # ... task=charge id=... attempt=1 worker=w1
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

from aiocelery.tasks.context import current_task

TASK_FIELDS = ("task_name", "task_id", "attempt", "worker")


class TaskContextFilter(logging.Filter):
    """Adds ``task_name``, ``task_id``, ``attempt`` and ``worker`` to every record ('' outside tasks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current_task()
        record.task_name = ctx.name if ctx else ""
        record.task_id = ctx.id if ctx else ""
        record.attempt = ctx.attempt if ctx else 0
        record.worker = ctx.worker if ctx else ""
        return True


class TextFormatter(logging.Formatter):
    """``[time LEVEL logger] message`` plus ``task=... id=... attempt=...`` inside a task."""

    def __init__(self) -> None:
        super().__init__("[%(asctime)s %(levelname)s %(name)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if getattr(record, "task_id", ""):
            line += (f" [task={record.task_name} id={record.task_id} attempt={record.attempt}"  # type: ignore[attr-defined]
                     f" worker={record.worker}]")  # type: ignore[attr-defined]
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, task fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in TASK_FIELDS:
            value = getattr(record, field, "")
            if value:
                data[field] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def configure(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at ``level`` in ``fmt`` ("text" or "json"), with task context on every record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(TaskContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def get_task_logger(name: str) -> logging.Logger:
    """A logger for task code; its records carry the running task's context."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, TaskContextFilter) for f in logger.filters):
        logger.addFilter(TaskContextFilter())
    return logger
