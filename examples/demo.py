"""The README's first command: a real worker and Machinery's client against a real Redis.

Picks a broker: ``$AIOCELERY_BROKER`` if set; else a throwaway ``redis-server`` on a free port
(when the binary is installed); else Redis on 127.0.0.1:6379 if one answers; else ``memory://``
with the worker in this process (it says so). With RabbitMQ (``AIOCELERY_BROKER=amqp://...``) the
result backend is ``$AIOCELERY_RESULT_BACKEND``, else a throwaway ``redis-server`` as above. Then starts
``python -m aiocelery worker -A examples.seed_example:app``, runs Machinery's client, and stops
the worker with SIGTERM (it exits 0).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(*, for_results: bool = False) -> tuple[str, subprocess.Popen[bytes] | None]:
    """A broker URL (or with ``for_results``, a Redis for results), and the redis-server process
    this demo started (if any)."""
    if os.environ.get("AIOCELERY_BROKER") and not for_results:
        return os.environ["AIOCELERY_BROKER"], None
    binary = shutil.which("redis-server")
    if binary:
        port = _free_port()
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", tempfile.mkdtemp(prefix="aiocelery-demo-")],
                                stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers(port):
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        print(f"demo: started a throwaway redis-server on 127.0.0.1:{port}", flush=True)
        return f"redis://127.0.0.1:{port}/0", proc
    if _answers(6379):
        print("demo: using the Redis on 127.0.0.1:6379", flush=True)
        return "redis://127.0.0.1:6379/0", None
    return "memory://", None


def run_on_redis(url: str, results: str | None = None) -> int:
    env = {**os.environ, "AIOCELERY_BROKER": url, "AIOCELERY_KEY_PREFIX": f"demo-{uuid.uuid4().hex[:8]}",
           "PYTHONPATH": str(ROOT)}
    if results:
        env["AIOCELERY_RESULT_BACKEND"] = results
    worker = subprocess.Popen([sys.executable, "-m", "aiocelery", "worker", "-A", "examples.seed_example:app",
                               "-n", "worker@localhost", "-c", "10"], cwd=ROOT, env=env)
    try:
        client = subprocess.run([sys.executable, str(ROOT / "examples" / "seed_example.py"), "client"],
                                cwd=ROOT, env=env, timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
        print(f"demo: worker exited with code {code}", flush=True)
    return client.returncode or code


async def run_in_memory() -> None:
    os.environ["AIOCELERY_BROKER"] = "memory://"
    sys.path.insert(0, str(ROOT))
    from examples import seed_example

    print("demo: no Redis available (install redis-server); running worker and client in-process on memory://")
    async with seed_example.app.worker("worker@localhost", concurrency=10):
        signature = seed_example.Signature("HelloWorld", args=[seed_example.Arg("string", "国学大师")])
        result = await seed_example.app.send_task(signature)
        print("resp:", await result.get(timeout=10))
        added = await seed_example.app.send_task("Add", args=(2, 3))
        print("Add(2, 3):", await added.get(timeout=10))
    await seed_example.app.close()


def main() -> int:
    url, proc = start_redis()
    results, results_proc = None, None
    try:
        if url == "memory://":
            asyncio.run(run_in_memory())
            return 0
        if url.lower().startswith("amqp"):
            results = os.environ.get("AIOCELERY_RESULT_BACKEND")
            if not results:
                results, results_proc = start_redis(for_results=True)
                if results == "memory://":
                    raise SystemExit("demo: RabbitMQ needs a Redis result backend: install redis-server or set "
                                     "AIOCELERY_RESULT_BACKEND=redis://...")
            print("demo: RabbitMQ broker, Redis result backend", flush=True)
        return run_on_redis(url, results)
    finally:
        for p in (proc, results_proc):
            if p is not None:
                p.terminate()
                p.wait(10)


if __name__ == "__main__":
    sys.exit(main())
