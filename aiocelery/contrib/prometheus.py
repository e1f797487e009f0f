"""Prometheus metrics from hooks, in a registry of their own (no global state).

    from aiocelery.contrib.prometheus import PrometheusHooks, serve_metrics

    hooks = PrometheusHooks()
    app.add_hooks(hooks)
    server = serve_metrics(hooks, 9100)          # GET http://127.0.0.1:9100/metrics
    await hooks.refresh_queue_depth(app)         # whenever queue depth should be read
    ...
    server.close()

or in one step (what ``aiocelery worker --metrics-port`` does): ``hooks = install(app, 9100)``,
then ``hooks.close()``.

Metrics:

- ``aiocelery_tasks_total{task,outcome}``: settled attempts; outcome is succeeded, failed,
  retried, dead or revoked.
- ``aiocelery_task_runtime_seconds{task}``: how long runs took (any outcome).
- ``aiocelery_task_queue_wait_seconds{task}``: start time minus send time. The send time is
  the broker's clock, so clock skew can show; negatives are clamped to 0. A delayed or retried
  task counts its countdown as waiting.
- ``aiocelery_tasks_in_flight``: deliveries this process's workers hold. A delivery a rate
  limit or concurrency cap puts back announces no outcome; it counts until the task comes back
  here or the worker stops.
- ``aiocelery_queue_depth{queue}``: tasks waiting in each queue, not yet handed to a worker,
  as of the last ``refresh_queue_depth``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

try:
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
    from prometheus_client.registry import Collector
    from prometheus_client.utils import floatToGoString
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "aiocelery.contrib.prometheus needs prometheus-client: pip install 'aiocelery[prometheus]' "
        f"(missing: {exc.name or exc})"
    ) from exc


from aiocelery.tasks.hooks import Hooks
from aiocelery.wire.records import Delivery, ErrorInfo

if TYPE_CHECKING:
    from aiocelery.app import App
    from aiocelery.worker.worker import Worker

log = logging.getLogger("aiocelery.prometheus")

RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                   3600.0)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                21600.0, 86400.0)


class _Histogram:
    """Bucket counts of one label set; ``counts[i]`` holds observations in ``(bounds[i-1], bounds[i]]``,
    the last one those above every bound."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        """Prometheus buckets (``le`` label, cumulative count, ``+Inf`` last) and the sum, as of now."""
        counts, total = list(self.counts), self.total  # copies taken under the GIL: one consistent-enough view
        buckets, running = [], 0
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), counts, strict=True):
            running += count
            buckets.append((bound, float(running)))
        return buckets, total


class _TaskStats:
    """Everything counted for one task name."""

    __slots__ = ("outcomes", "runtime", "wait")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.runtime = _Histogram(RUNTIME_BUCKETS)
        self.wait = _Histogram(WAIT_BUCKETS)


class PrometheusHooks(Hooks):
    """Counts outcomes and times runs; ``registry`` defaults to a new ``CollectorRegistry``.

    The hooks only bump plain counters on the event loop (a dict lookup and an integer add, no
    lock, no ``labels()`` call per task); the metric families are built when the registry is
    scraped, in the scraping thread.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        """Where the metrics live; serve it with ``serve_metrics``."""
        self.server: MetricsServer | None = None
        """The HTTP server ``install`` started, closed by ``close()``."""
        self._stats: dict[str, _TaskStats] = {}  # task name -> its counters
        self._held: dict[str, str] = {}  # task id -> worker name
        self._started: dict[str, float] = {}  # task id -> perf_counter at start
        self._depths: dict[str, int] = {}  # queue -> tasks waiting, as of the last refresh
        self._queues: set[str] = set()
        self._refresher: asyncio.Task[None] | None = None
        self.registry.register(_Collector(self))

    def _task(self, name: str) -> _TaskStats:
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = _TaskStats()
        return stats

    # -- hooks ---------------------------------------------------------------------------------

    def on_worker_start(self, worker: Worker) -> None:
        self._queues.update(worker.queues)

    def on_received(self, d: Delivery) -> None:
        self._queues.add(d.queue)
        self._held[d.task_id] = d.worker  # keyed by id: a put-back delivery coming back replaces itself

    def on_started(self, d: Delivery, headers: dict[str, str]) -> None:
        now = time.perf_counter()
        self._started[d.task_id] = now
        self._task(d.name).wait.observe(max(0.0, time.time() - d.created_ms / 1000))

    def on_succeeded(self, d: Delivery, runtime_s: float) -> None:
        self._settled(d, "succeeded", runtime_s)

    def on_retried(self, d: Delivery, error: ErrorInfo | None, countdown_s: float) -> None:
        self._settled(d, "retried")

    def on_failed(self, d: Delivery, error: ErrorInfo | None) -> None:
        self._settled(d, "failed")

    def on_dead(self, d: Delivery, reason: str) -> None:
        self._settled(d, "dead")

    def on_revoked(self, d: Delivery, reason: str) -> None:
        self._settled(d, "revoked")

    def on_released(self, d: Delivery, reason: str) -> None:
        """No outcome to count; the delivery is no longer in flight here."""
        self._started.pop(d.task_id, None)
        self._held.pop(d.task_id, None)

    def on_worker_stop(self, worker: Worker) -> None:
        for task_id, name in list(self._held.items()):
            if name == worker.name:
                del self._held[task_id]
                self._started.pop(task_id, None)

    def _settled(self, d: Delivery, outcome: str, runtime_s: float | None = None) -> None:
        stats = self._task(d.name)
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1
        started = self._started.pop(d.task_id, None)
        if runtime_s is None and started is not None:
            runtime_s = time.perf_counter() - started
        if runtime_s is not None:  # None: it never ran (unknown task, bad payload)
            stats.runtime.observe(runtime_s)
        self._held.pop(d.task_id, None)

    # -- queue depth ---------------------------------------------------------------------------

    async def refresh_queue_depth(self, app: App, queues: Iterable[str] | None = None) -> dict[str, int]:
        """Read how many tasks wait in each queue and set ``aiocelery_queue_depth``; returns the counts.

        ``queues`` defaults to the app's default queue, its tasks' queues and the queues seen here.
        """
        names = sorted(set(queues) if queues is not None else self._known_queues(app))
        depths = await queue_depths(app, names)
        self._depths.update(depths)
        return depths

    def _known_queues(self, app: App) -> set[str]:
        names = {app.config.default_queue, *self._queues}
        for task_name in app.registry:
            task = app.registry.get(task_name)
            if task is not None and task.options.queue:
                names.add(task.options.queue)
        return names

    def refresh_every(self, app: App, interval_s: float = 15.0) -> asyncio.Task[None]:
        """Refresh the queue depth every ``interval_s`` in a task of the running loop (``close()`` stops it)."""
        if self._refresher is not None:
            self._refresher.cancel()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop(app, interval_s))
        return self._refresher

    async def _refresh_loop(self, app: App, interval_s: float) -> None:
        while True:
            try:
                await self.refresh_queue_depth(app)
            except Exception as exc:  # an outage must not end the refresher
                log.warning("queue depth not refreshed (%s: %s)", type(exc).__name__, exc)
            await asyncio.sleep(interval_s)

    def close(self) -> None:
        """Stop the server ``install`` started and the depth refresher, if any."""
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        if self.server is not None:
            self.server.close()
            self.server = None


async def queue_depths(app: App, queues: Iterable[str]) -> dict[str, int]:
    """Tasks waiting in each queue, not yet handed to a worker (``QueueStats.waiting``)."""
    names = list(queues)
    stats = await asyncio.gather(*(app.connections.operations.queue_stats(q) for q in names))
    return {s.queue: s.waiting for s in stats}


class _Collector(Collector):
    """Builds the metric families from a ``PrometheusHooks``' counters when the registry is collected."""

    def __init__(self, hooks: PrometheusHooks) -> None:
        self._hooks = hooks

    def describe(self) -> Iterable[Metric]:
        return ()  # names are fixed and unique within the registry; nothing to check up front

    def collect(self) -> Iterable[Metric]:
        hooks = self._hooks
        tasks = CounterMetricFamily("aiocelery_tasks", "Settled task attempts by outcome.", labels=["task", "outcome"])
        runtime = HistogramMetricFamily("aiocelery_task_runtime_seconds", "How long task runs took.",
                                        labels=["task"])
        wait = HistogramMetricFamily("aiocelery_task_queue_wait_seconds", "From send to start of a run.",
                                     labels=["task"])
        for name, stats in list(hooks._stats.items()):
            for outcome, count in list(stats.outcomes.items()):
                tasks.add_metric([name, outcome], count)
            for family, histogram in ((runtime, stats.runtime), (wait, stats.wait)):
                if any(histogram.counts):
                    buckets, total = histogram.cumulative()
                    family.add_metric([name], buckets, total)
        in_flight = GaugeMetricFamily("aiocelery_tasks_in_flight", "Deliveries held by this process's workers.",
                                      value=len(hooks._held))
        depth = GaugeMetricFamily("aiocelery_queue_depth", "Tasks waiting in a queue (last refresh).",
                                  labels=["queue"])
        for queue, count in sorted(hooks._depths.items()):
            depth.add_metric([queue], count)
        return [tasks, runtime, wait, in_flight, depth]


# -- serving -----------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsServer:
    """The metrics HTTP server running in a daemon thread; ``close()`` stops it."""

    def __init__(self, registry: CollectorRegistry, port: int, host: str) -> None:
        self._httpd = make_server(host, port, make_wsgi_app(registry), _ThreadingServer, handler_class=_QuietHandler)
        self.host = host
        self.port = int(self._httpd.server_port)
        """The bound port (the real one when 0 was asked for)."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="aiocelery-metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Where to scrape."""
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        with contextlib.suppress(Exception):
            self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_metrics(hooks: PrometheusHooks, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``hooks.registry`` on ``http://host:port/metrics`` from a daemon thread (port 0: any free one)."""
    return MetricsServer(hooks.registry, port, host)


def install(app: App, port: int, host: str = "127.0.0.1", *, refresh_s: float = 15.0) -> PrometheusHooks:
    """Register a ``PrometheusHooks`` on ``app`` and serve it; when called on a running loop, also
    refresh the queue depth every ``refresh_s``. ``close()`` the result to stop both."""
    hooks = PrometheusHooks()
    app.add_hooks(hooks)
    hooks.server = serve_metrics(hooks, port, host)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no running loop: refreshing is the caller's business
        return hooks
    hooks.refresh_every(app, refresh_s)
    return hooks
