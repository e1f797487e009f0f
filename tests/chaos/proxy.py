"""A small TCP fault proxy for chaos tests: forwards a loopback port to Redis, with faults on demand.

It runs its own asyncio loop in a daemon thread, so sync and async tests drive it the same way::

    with FaultProxy(redis_port) as proxy:      # listens on 127.0.0.1:<proxy.port>
        app = App(Config(broker=proxy.url))
        proxy.stall()                           # nothing moves either way; connections stay open
        proxy.resume()                          # buffered bytes flow again (late, as after a stall)
        proxy.drop_next_reply()                 # the next server->client chunk vanishes
        proxy.reset_all()                       # every open connection gets an RST (SO_LINGER 0)
        proxy.blackhole()                       # accept connections, never forward nor answer
        proxy.heal()                            # all faults off (blackholed connections are reset)
        proxy.open_connections()                # client connections not yet closed and passed on

Every control call runs on the proxy's loop and returns once the fault is in effect. Chunks are
what one ``read()`` returns; for Redis's small replies a chunk is one reply, which is what
``drop_next_reply`` relies on (``match=`` narrows it to a chunk containing given bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
CHUNK = 65536
CONTROL_TIMEOUT_S = 10.0


@dataclass(eq=False)
class _Conn:
    """One client connection and its upstream twin."""

    client_w: asyncio.StreamWriter
    upstream_w: asyncio.StreamWriter | None = None
    blackholed: bool = False
    """Accepted during a blackhole: never reached the server; reset on heal."""
    drop_next: bool = False
    """Swallow the next server->client chunk of this connection."""
    upstream_addr: str = ""
    """The ``host:port`` Redis sees this connection's upstream twin come from (CLIENT LIST addr)."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _abort(writer: asyncio.StreamWriter | None) -> None:
    """Close ``writer``'s socket abruptly: SO_LINGER 0 makes the kernel send an RST."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None and not writer.transport.is_closing():
        writer.close()


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream_host:upstream_port``; faults switchable at runtime."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        """The port the proxy listens on (set by ``start()``)."""
        self.accepted = 0
        """Client connections accepted so far."""
        self.dropped = 0
        """Server->client chunks swallowed by ``drop_next_reply``."""
        self.resets = 0
        """Connections closed with an RST by ``reset_all``/``heal``."""
        self.closed_upstreams: list[str] = []
        """The ``upstream_addr`` of every connection finished so far (what it carried was passed on,
        or dropped by a fault): once Redis no longer lists one, it has run every command it got."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._flowing: asyncio.Event | None = None
        self._blackhole = False
        self._drop_any = 0
        self._drop_match: bytes | None = None
        self._drop_then_reset = False
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def url(self) -> str:
        """A Redis URL pointing at the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start the thread and its loop; returns once the proxy listens."""
        self._thread = threading.Thread(target=self._main, name=f"fault-proxy->{self.upstream[1]}", daemon=True)
        self._thread.start()
        if not self._ready.wait(CONTROL_TIMEOUT_S):
            raise RuntimeError("fault proxy did not start")
        if self._startup_error is not None:
            raise RuntimeError(f"fault proxy did not start: {self._startup_error!r}")
        return self

    def stop(self) -> None:
        """Close the listener and every connection, stop the loop and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError, TimeoutError):
            self._call(self._shutdown)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(CONTROL_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        assert self._flowing is not None
        self._flowing.set()
        for conn in list(self._conns):
            self._kill(conn, rst=False)
        tasks = [t for conn in list(self._conns) for t in conn.tasks]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._conns.clear()

    def _call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``fn()`` on the proxy's loop and wait for it."""
        if self._loop is None:
            raise RuntimeError("the proxy is not started")
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(CONTROL_TIMEOUT_S)

    def open_connections(self) -> int:
        """Client connections still open through the proxy (a closed one counts until the proxy
        has passed on what it held of it)."""
        async def go() -> int:
            return len(self._conns)
        return self._call(go)

    # -- faults ------------------------------------------------------------------------------

    def stall(self) -> None:
        """Stop forwarding in both directions; connections stay open, bytes wait in the kernel."""
        async def go() -> None:
            assert self._flowing is not None
            self._flowing.clear()
        self._call(go)

    def resume(self) -> None:
        """Forward again (what was sent during the stall arrives now, late)."""
        async def go() -> None:
            assert self._flowing is not None
            self._flowing.set()
        self._call(go)

    def drop_next_reply(self, *, every_connection: bool = False, match: bytes | None = None,
                        then_reset: bool = False) -> None:
        """Swallow the next server->client chunk: on the first connection that gets one, or, with
        ``every_connection``, on each connection open now. ``match``: only a chunk containing
        these bytes counts. ``then_reset``: RST the connection right after swallowing."""
        async def go() -> None:
            self._drop_match = match
            self._drop_then_reset = then_reset
            if every_connection:
                for conn in self._conns:
                    conn.drop_next = True
            else:
                self._drop_any += 1
        self._call(go)

    def reset_all(self) -> int:
        """Close every open client connection with an RST (and its upstream); returns how many."""
        async def go() -> int:
            conns = list(self._conns)
            for conn in conns:
                self._kill(conn, rst=True)
            return len(conns)
        return self._call(go)

    def blackhole(self) -> None:
        """Accept new connections but never connect them upstream; stall the existing ones."""
        async def go() -> None:
            assert self._flowing is not None
            self._blackhole = True
            self._flowing.clear()
        self._call(go)

    def heal(self) -> None:
        """Every fault off: forward again, reset connections accepted during a blackhole, disarm drops."""
        async def go() -> None:
            assert self._flowing is not None
            self._blackhole = False
            self._drop_any = 0
            self._drop_match = None
            self._drop_then_reset = False
            for conn in list(self._conns):
                conn.drop_next = False
                if conn.blackholed:
                    self._kill(conn, rst=True)
            self._flowing.set()
        self._call(go)

    # -- forwarding --------------------------------------------------------------------------

    def _kill(self, conn: _Conn, *, rst: bool) -> None:
        if rst and not conn.client_w.transport.is_closing():
            self.resets += 1
        close = _abort if rst else _close
        close(conn.client_w)
        _abort(conn.upstream_w)
        for t in conn.tasks:
            if t is not asyncio.current_task():
                t.cancel()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        conn = _Conn(client_w)
        self._conns.add(conn)
        me = asyncio.current_task()
        if me is not None:
            conn.tasks.append(me)
        try:
            if self._blackhole:
                conn.blackholed = True
                while await client_r.read(CHUNK):  # swallow whatever the client sends, answer nothing
                    pass
                return
            try:
                upstream_r, conn.upstream_w = await asyncio.open_connection(*self.upstream)
            except OSError:
                _abort(client_w)  # upstream down: the client sees a reset, as with no listener
                return
            host, port = conn.upstream_w.get_extra_info("sockname")[:2]
            conn.upstream_addr = f"{host}:{port}"
            pumps = [asyncio.ensure_future(self._pump(client_r, conn.upstream_w, conn, None)),
                     asyncio.ensure_future(self._pump(upstream_r, client_w, conn, conn))]
            conn.tasks += pumps
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self._finish(conn)

    def _finish(self, conn: _Conn) -> None:
        for t in conn.tasks:
            if t is not asyncio.current_task() and not t.done():
                t.cancel()
        _close(conn.client_w)
        _close(conn.upstream_w)
        if conn in self._conns and conn.upstream_addr:
            self.closed_upstreams.append(conn.upstream_addr)
        self._conns.discard(conn)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn,
                    replies_of: _Conn | None) -> None:
        """Copy ``reader`` to ``writer`` while flowing; ``replies_of`` is set on the server->client side."""
        assert self._flowing is not None
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    return
                await self._flowing.wait()  # a chunk read just before a stall waits for the resume
                if replies_of is not None and self._swallow(replies_of, data):
                    if self._drop_then_reset:
                        self._kill(replies_of, rst=True)
                        return
                    continue
                writer.write(data)
                await writer.drain()

    def _swallow(self, conn: _Conn, data: bytes) -> bool:
        if not (conn.drop_next or self._drop_any):
            return False
        if self._drop_match is not None and self._drop_match not in data:
            return False
        if conn.drop_next:
            conn.drop_next = False
        else:
            self._drop_any -= 1
        self.dropped += 1
        return True
