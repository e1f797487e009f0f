"""A minimal HTTP health endpoint for orchestrators: ``/live`` and ``/ready`` (200 or 503)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def serve_health(port: int, ready: Callable[[], bool], host: str = "0.0.0.0") -> asyncio.Server:
    """Serve ``GET /live`` (always 200 while the loop runs) and ``GET /ready`` (200 when ``ready()``)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            path = request.split(b" ")[1] if request.count(b" ") >= 2 else b"/"
            ok = path == b"/live" or (path == b"/ready" and ready())
            known = path in (b"/live", b"/ready")
            status = b"200 OK" if ok else (b"503 Service Unavailable" if known else b"404 Not Found")
            body = b"ok\n" if ok else b"not ready\n" if known else b"try /live or /ready\n"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
