"""Start throwaway ``redis-server`` processes on free loopback ports (never the shared 6379)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server child process; ``stop()``/``start()`` to simulate outages."""

    port: int = field(default_factory=free_port)
    persistent: bool = False
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aiocelery-redis-")))
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)
    """Extra options after the defaults (so they win), e.g. ``["--replicaof", "127.0.0.1", "6380"]``."""
    config_file: Path | None = None
    """A config file put before the options (``redis-server <file> --port ...``), e.g. a Sentinel's."""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run `make install` (apt-get install redis-server)")
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        config = [str(self.config_file)] if self.config_file is not None else []
        self.proc = subprocess.Popen(
            [binary, *config, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.workdir),
             "--protected-mode", "no", *persistence, *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:  # exited: say so now, not in 10 s
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def close(self) -> None:
        """Stop for good and remove the working directory (``stop`` keeps it, for restarts)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # never leave a process behind
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
