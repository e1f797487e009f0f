"""OpenTelemetry tracing: a PRODUCER span per send, a CONSUMER span per run, in one trace.

    from aiocelery.contrib.otel import OpenTelemetryHooks

    app.add_hooks(OpenTelemetryHooks())                  # the global TracerProvider
    app.add_hooks(OpenTelemetryHooks(tracer_provider))   # or a given one
    app.add_hooks(OpenTelemetryHooks(sample_ratio=0.05)) # trace 1 send in 20 (head sampling)

Sending a task starts and ends a ``"<task> publish"`` span and writes its context into the
message headers with the configured propagator (W3C ``traceparent`` by default). The worker
extracts it and runs the task inside a ``"<task> process"`` span whose parent is that producer
span, so the trace crosses processes; the process span is the current span while the task runs,
so tasks it sends (and anything else instrumented) become its children. Attributes follow the
OpenTelemetry messaging conventions (``messaging.system``, ``messaging.operation``,
``messaging.destination.name``, ``messaging.message.id``) plus ``aiocelery.task.*``.

**Cost and sampling.** A span of the OpenTelemetry SDK costs ~10 µs to start and end before
any attribute or exporter, ~40 % of what a whole no-op task costs an aiocelery worker, so
tracing every task of a high-volume queue is expensive whatever the sampler says (an
unsampled SDK span still costs ~7 µs, header parsing included). ``sample_ratio`` samples at the
head instead: a send outside any trace is traced with that probability, and one that is not
gets a ``aiocelery-traced: 0`` header, so neither the sender nor the worker makes a span for it
(~0.5 µs). A send made inside a trace (a web request's span, a traced task) follows that trace's
sampled flag, so a trace is never cut in half. The provider's own sampler still applies to what
is traced. ``bench/hooks_overhead.py`` measures every setting.

A process span ends with its outcome (succeeded, retried, failed, dead, revoked); a delivery
refused before it runs (unknown task, undecodable payload, arguments that don't bind) gets one
too, ended at once with its error. A run that ends with none (its lease was lost, or the worker
stopped and handed it back) ends when the same task starts again here, or when its worker
stops; either way with status ERROR saying so.

Known gaps (hooks the core does not call yet): workflow steps started by a settlement (chain
links, errbacks, chord callbacks) carry no trace context and start new traces; the publish span
ends before the message is sent, so it times nothing and cannot record a send error.
"""

from __future__ import annotations

import random
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "aiocelery.contrib.otel needs OpenTelemetry: pip install 'aiocelery[otel]' "
        f"(missing: {exc.name or exc})"
    ) from exc

from aiocelery._version import __version__
from aiocelery.tasks.hooks import Hooks
from aiocelery.wire.message import TaskMessage, decode_payload
from aiocelery.wire.records import Delivery, ErrorInfo

if TYPE_CHECKING:
    from aiocelery.worker.worker import Worker

SYSTEM = "aiocelery"
UNTRACED_HEADER = "aiocelery-traced"
"""Set to ``"0"`` on a send that head sampling left out: no span for it anywhere."""
_IN_UNTRACED_RUN: ContextVar[bool] = ContextVar("aiocelery_otel_untraced_run", default=False)
"""True while a run that head sampling left out executes (what it sends is left out too)."""
MAX_OPEN_SPANS = 100_000
"""Process spans kept open at most; past it the oldest is ended (a guard against runs that never settle)."""


@dataclass(slots=True)
class _Open:
    span: Span
    token: Token[otel_context.Context] | None
    attempt: int
    worker: str


class OpenTelemetryHooks(Hooks):
    """Traces sends and runs; ``tracer_provider`` defaults to the global one."""

    def __init__(self, tracer_provider: TracerProvider | None = None, *, sample_ratio: float = 1.0) -> None:
        if not 0.0 <= sample_ratio <= 1.0:
            raise ValueError(f"sample_ratio must be between 0 and 1, got {sample_ratio!r}")
        self._tracer = trace.get_tracer("aiocelery", __version__, tracer_provider)
        self._ratio = sample_ratio
        self._random = random.Random()
        self._open: dict[str, _Open] = {}
        """Process spans not ended yet, by task id (one attempt of a task runs at a time)."""

    # -- sending -------------------------------------------------------------------------------

    def on_publish(self, message: TaskMessage) -> None:
        if self._ratio < 1.0 and not self._traced():
            message.headers[UNTRACED_HEADER] = "0"
            return
        span = self._tracer.start_span(f"{message.name} publish", kind=SpanKind.PRODUCER, attributes={
            "messaging.system": SYSTEM,
            "messaging.operation": "publish",
            "messaging.destination.name": message.queue,
            "messaging.message.id": message.id,
            "aiocelery.task.name": message.name,
        })
        # There is no "sent" hook: the span covers building the message, not the round trip.
        propagate.inject(message.headers, context=trace.set_span_in_context(span))
        span.end()

    def _traced(self) -> bool:
        """Head sampling: follow the current trace's sampled flag, else draw with ``sample_ratio``."""
        current = trace.get_current_span().get_span_context()
        if current.is_valid:
            return bool(current.trace_flags.sampled)
        if _IN_UNTRACED_RUN.get():
            return False  # sent by a task whose own send was left out: its trace stays out whole
        return self._random.random() < self._ratio

    # -- running -------------------------------------------------------------------------------

    def on_started(self, d: Delivery, headers: dict[str, str]) -> None:
        untraced = headers.get(UNTRACED_HEADER) == "0"
        if self._ratio < 1.0:  # every run sets it, so the consumer's context never carries a stale one
            _IN_UNTRACED_RUN.set(untraced)
        if untraced:
            return
        self._end_superseded(d)
        span = self._process_span(d, headers)
        token = otel_context.attach(trace.set_span_in_context(span))
        self._open[d.task_id] = _Open(span, token, d.attempt, d.worker)

    def _process_span(self, d: Delivery, headers: dict[str, str]) -> Span:
        parent = propagate.extract(headers, context=otel_context.Context())
        return self._tracer.start_span(f"{d.name} process", context=parent, kind=SpanKind.CONSUMER, attributes={
            "messaging.system": SYSTEM,
            "messaging.operation": "process",
            "messaging.destination.name": d.queue,
            "messaging.message.id": d.task_id,
            "aiocelery.task.name": d.name,
            "aiocelery.task.attempt": d.attempt,
            "aiocelery.task.retries": d.retries,
            "aiocelery.worker": d.worker,
        })

    def on_succeeded(self, d: Delivery, runtime_s: float) -> None:
        self._end(d, "succeeded", None)

    def on_retried(self, d: Delivery, error: ErrorInfo | None, countdown_s: float) -> None:
        self._end(d, "retried", error or ErrorInfo("Retry", "retried", ""), {"aiocelery.task.countdown_s": countdown_s})

    def on_failed(self, d: Delivery, error: ErrorInfo | None) -> None:
        self._end(d, "failed", error or ErrorInfo("Error", "failed", ""))

    def on_dead(self, d: Delivery, reason: str) -> None:
        self._end(d, "dead", ErrorInfo("Dead", reason, ""))

    def on_revoked(self, d: Delivery, reason: str) -> None:
        self._end(d, "revoked", None, {"aiocelery.task.reason": reason})

    def on_released(self, d: Delivery, reason: str) -> None:
        """The run ended without an outcome (put back, handed back, lease lost)."""
        self._end(d, "released", None, {"aiocelery.task.released": reason})

    def on_worker_stop(self, worker: Worker) -> None:
        for task_id, run in list(self._open.items()):
            if run.worker == worker.name:
                del self._open[task_id]
                _finish(run, "unsettled", ErrorInfo("Unsettled", "the worker stopped before the task settled", ""))

    # -- helpers -------------------------------------------------------------------------------

    def _end(self, d: Delivery, outcome: str, error: ErrorInfo | None,
             extra: dict[str, float | str] | None = None) -> None:
        run = self._open.get(d.task_id)
        if run is not None and run.attempt == d.attempt:
            del self._open[d.task_id]
        elif error is not None:  # refused before it started (unknown task, bad payload or arguments)
            headers = _headers(d)
            if headers.get(UNTRACED_HEADER) == "0":
                return
            run = _Open(self._process_span(d, headers), None, d.attempt, d.worker)
        else:
            return
        if extra:
            run.span.set_attributes(extra)
        _finish(run, outcome, error)

    def _end_superseded(self, d: Delivery) -> None:
        """End what no outcome will: an earlier attempt of the same task, or the oldest past the cap."""
        run = self._open.pop(d.task_id, None)
        if run is not None:
            _finish(run, "unsettled", ErrorInfo("Unsettled", f"superseded by attempt {d.attempt}", ""))
        if len(self._open) >= MAX_OPEN_SPANS:
            _finish(self._open.pop(next(iter(self._open))), "unsettled",
                    ErrorInfo("Unsettled", f"more than {MAX_OPEN_SPANS} runs open", ""))


def _finish(run: _Open, outcome: str, error: ErrorInfo | None) -> None:
    """Record ``outcome`` (and ``error``) on the span, end it, and make its parent current again."""
    span = run.span
    span.set_attribute("aiocelery.task.outcome", outcome)
    if error is not None:
        span.set_attribute("error.type", error.type)
        span.add_event("exception", {"exception.type": error.type, "exception.message": error.message,
                                     "exception.stacktrace": error.traceback})
        span.set_status(Status(StatusCode.ERROR, f"{error.type}: {error.message}"))
    span.end()
    if run.token is None:
        return
    # Outcomes are announced in the task's own asyncio task: restore what was current before
    # the run. Anywhere else (an abandoned run ended later) the token is not ours to reset.
    if trace.get_current_span() is span:
        otel_context.detach(run.token)


def _headers(d: Delivery) -> dict[str, str]:
    """The headers in ``d``'s payload, or none when it does not decode."""
    try:
        return decode_payload(d.payload).headers
    except ValueError:
        return {}
