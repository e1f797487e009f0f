"""The adapter subprocesses: a worker (measured) and a client (prints JSON lines)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from .libraries import Library


class RunError(RuntimeError):
    """One workload run failed; the driver records it and goes on."""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class WorkerProcess:
    """``<adapter> worker``: the library's worker in its own process group (children included)."""

    def __init__(self, lib: Library, redis_url: str, concurrency: int, workload: str, log: Path) -> None:
        self.cmd = lib.command("worker", "--redis", redis_url, "--concurrency", str(concurrency),
                               "--workload", workload)
        self.env = {**lib.env, "BENCH_REDIS_URL": redis_url}
        self.log = log
        self.started = 0.0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as out:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RunError("worker not started")
        return self.proc.pid

    def pause(self) -> None:
        """SIGSTOP the whole worker (W3: tasks are queued while it cannot take any)."""
        os.killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.pid, signal.SIGCONT)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RunError(f"worker exited with code {self.proc.returncode}; log {self.log}:\n{_tail(self.log)}")

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM to the group, then SIGKILL to whatever is left of it."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the worker leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGCONT)  # in case it was paused
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.proc = None


class ClientProcess:
    """``<adapter> client``: reads the JSON lines it prints as they come."""

    def __init__(self, lib: Library, redis_url: str, workload: str, n: int, log: Path,
                 max_seconds: float | None = None) -> None:
        cmd = lib.command("client", "--redis", redis_url, "--workload", workload, "--n", str(n))
        if max_seconds is not None:
            cmd += ["--max-seconds", str(max_seconds)]
        self.log = log
        self._lines: queue.Queue[str | None] = queue.Queue()
        with log.open("ab") as err:
            self.proc = subprocess.Popen(cmd, env={**lib.env, "BENCH_REDIS_URL": redis_url},
                                         stdout=subprocess.PIPE, stderr=err,
                                         stdin=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def result(self, timeout_s: float) -> dict[str, Any]:
        """The first JSON line the client prints; RunError when it fails or takes too long."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise RunError(f"client timed out after {timeout_s:.0f} s; log {self.log}:\n"
                               f"{_tail(self.log)}") from None
            if line is None:
                code = self.proc.wait()
                raise RunError(f"client exited ({code}) without a result; log {self.log}:\n{_tail(self.log)}")
            if line.startswith("{"):
                return dict(json.loads(line))

    def send(self, line: str) -> None:
        """A line on the client's stdin (W3: "go")."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout_s: float = 60) -> None:
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RunError(f"client did not exit within {timeout_s:.0f} s") from None
        if code != 0:
            raise RunError(f"client exited with code {code}; log {self.log}:\n{_tail(self.log)}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
