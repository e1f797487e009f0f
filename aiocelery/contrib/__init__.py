"""Optional integrations built on ``aiocelery.Hooks``; each needs its extra installed.

- ``aiocelery.contrib.otel``: OpenTelemetry tracing (``pip install 'aiocelery[otel]'``).
- ``aiocelery.contrib.prometheus``: Prometheus metrics (``pip install 'aiocelery[prometheus]'``).

Nothing here is imported by ``import aiocelery``.
"""
