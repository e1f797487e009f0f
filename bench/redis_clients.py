"""Client CPU per Redis round trip: aiocelery's own client (``aiocelery._redis``) vs redis-py's asyncio one.

Starts its own redis-server (persistence off) on a free loopback port (never 6379), runs on
uvloop, and measures this process's CPU time (``time.process_time``: the client's work only;
the server is another process) for:

1. ``PING``, sequential: CPU per call;
2. ``EVALSHA`` of a small script (``return ARGV[1]``), sequential: CPU per call;
3. 100 concurrent callers each running that ``EVALSHA`` in a loop: CPU per call;
4. a pipeline of 100 ``EVALSHA`` in one round trip: CPU per batch (redis-py:
   ``pipeline(transaction=False)``; aiocelery: ``Client.run_scripts`` with 100 calls).

Each round runs every case for both clients, in alternating order; the figures are medians over
the rounds. With two or more CPUs, this process and redis-server are pinned to different ones
(``--no-pin`` not to): when the scheduler puts them on one CPU, a sequential round trip costs
the client far less (aiocelery's PING: 8-12 µs instead of 35-40 here), and unpinned runs swing
between the two cases from round to round. redis-py is ``redis.asyncio.Redis`` with its default
parser, which is hiredis when installed (checked, and printed). With ``--imports``, it also
times cold imports in fresh interpreters (``redis.asyncio``; ``aiocelery``, which its client
cannot be imported without; both) and their resident memory (median of 5).

Usage: ``python -m bench.redis_clients [--rounds 5] [--calls 10000] [--batches 1000] [--imports]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402

SCRIPT = "return ARGV[1]"
CONCURRENCY = 100
BATCH = 100
CASES = ("PING", "EVALSHA", f"EVALSHA x{CONCURRENCY} callers", f"pipeline of {BATCH} EVALSHA")
UNITS = ("µs/call", "µs/call", "µs/call", "µs/batch")
CLIENTS = ("aiocelery", "redis-py")

Op = Callable[[], Awaitable[Any]]


class Side:
    """One client and its four operations, each checked once before it is timed."""

    name: str

    async def ping(self) -> Any:
        raise NotImplementedError

    async def script(self) -> Any:
        raise NotImplementedError

    async def batch(self) -> list[Any]:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class Ours(Side):
    name = "aiocelery"

    def __init__(self, port: int, max_connections: int) -> None:
        from aiocelery._redis.client import Client
        from aiocelery._redis.connection import Target
        from aiocelery._redis.scripts import Script

        self.client = Client(Target(host="127.0.0.1", port=port), max_connections=max_connections)
        self.echo = Script("echo", SCRIPT)
        self.calls: list[tuple[list[Any], list[Any]]] = [([], ["x"]) for _ in range(BATCH)]

    async def ping(self) -> Any:
        return await self.client.call("PING")

    async def script(self) -> Any:
        return await self.client.run_script(self.echo, [], ["x"])

    async def batch(self) -> list[Any]:
        return await self.client.run_scripts(self.echo, self.calls)

    async def aclose(self) -> None:
        await self.client.aclose()


class RedisPy(Side):
    name = "redis-py"

    def __init__(self, port: int) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis(host="127.0.0.1", port=port)
        self.sha = ""

    async def setup(self) -> str:
        """Load the script; returns the parser class the pool's connections use."""
        self.sha = await self.client.script_load(SCRIPT)
        conn = await self.client.connection_pool.get_connection()
        try:
            return type(conn._parser).__name__
        finally:
            await self.client.connection_pool.release(conn)

    async def ping(self) -> Any:
        return await self.client.ping()

    async def script(self) -> Any:
        return await self.client.evalsha(self.sha, 0, "x")

    async def batch(self) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for _ in range(BATCH):
                pipe.evalsha(self.sha, 0, "x")
            return await pipe.execute()

    async def aclose(self) -> None:
        await self.client.aclose()


async def sequential(op: Op, n: int) -> float:
    """Client CPU µs per ``op``, awaited ``n`` times one after the other."""
    t0 = time.process_time()
    for _ in range(n):
        await op()
    return (time.process_time() - t0) / n * 1e6


async def concurrent(op: Op, n: int, callers: int) -> float:
    """Client CPU µs per ``op`` with ``callers`` tasks each awaiting it ``n // callers`` times in a loop."""
    each = max(1, n // callers)

    async def caller() -> None:
        for _ in range(each):
            await op()

    t0 = time.process_time()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return (time.process_time() - t0) / (each * callers) * 1e6


async def measure(side: Side, case: int, calls: int, batches: int) -> float:
    if case == 0:
        return await sequential(side.ping, calls)
    if case == 1:
        return await sequential(side.script, calls)
    if case == 2:
        return await concurrent(side.script, calls, CONCURRENCY)
    return await sequential(side.batch, batches)


async def check(side: Side) -> None:
    """Each operation answers what it should (and connections, SCRIPT LOAD are done before timing)."""
    if await side.ping() not in (True, b"PONG"):
        raise SystemExit(f"{side.name}: PING answered wrongly")
    if await side.script() != b"x":
        raise SystemExit(f"{side.name}: EVALSHA answered wrongly")
    if await side.batch() != [b"x"] * BATCH:
        raise SystemExit(f"{side.name}: the pipeline answered wrongly")
    await concurrent(side.script, CONCURRENCY * 10, CONCURRENCY)  # warm: open the pool's connections


async def run(port: int, args: argparse.Namespace) -> tuple[dict[tuple[str, int], list[float]], str]:
    ours, theirs = Ours(port, args.max_connections), RedisPy(port)
    parser = await theirs.setup()
    sides: list[Side] = [ours, theirs]
    try:
        for side in sides:
            await check(side)
        samples: dict[tuple[str, int], list[float]] = {}
        for r in range(args.rounds):
            for case in range(len(CASES)):
                order = sides if (r + case) % 2 == 0 else sides[::-1]  # alternate who goes first
                for side in order:
                    value = await measure(side, case, args.calls, args.batches)
                    samples.setdefault((side.name, case), []).append(value)
            print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for side in sides:
            await side.aclose()
    return samples, parser


IMPORT_PROBE = """
import sys, time
t = time.perf_counter()
{stmt}
dt = time.perf_counter() - t
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
print(dt * 1000, rss / 1024, len(sys.modules))
"""


def import_cost(stmt: str, repeat: int = 5) -> tuple[float, float, int]:
    """Median wall ms of ``stmt`` in a fresh interpreter, its RSS (MiB) after it, and modules loaded.

    RSS is read from /proc (VmRSS): ``ru_maxrss`` would carry over this process's own peak across exec."""
    rows = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE.format(stmt=stmt)], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
        rows.append((float(out[0]), float(out[1]), int(out[2])))
    return (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows),
            int(statistics.median(r[2] for r in rows)))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(redis_version: str, parser: str) -> str:
    from importlib.metadata import version

    import aiocelery

    return (f"Python {platform.python_version()}, uvloop {version('uvloop')}, hiredis {version('hiredis')}, "
            f"aiocelery {aiocelery.__version__}, redis-py {version('redis')} (parser {parser}), "
            f"redis-server {redis_version}")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.redis_clients",
        description="Client CPU per Redis round trip, aiocelery's client vs redis-py's asyncio client (hiredis), "
                    "on uvloop against a redis-server of its own.")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; figures are medians (default 5)")
    parser.add_argument("--calls", type=int, default=10000,
                        help="calls per sequential or concurrent measurement (default 10000)")
    parser.add_argument("--batches", type=int, default=1000,
                        help=f"pipelines of {BATCH} EVALSHA per measurement (default 1000)")
    parser.add_argument("--max-connections", type=int, default=64,
                        help="aiocelery's pool size (default 64, the project's default; redis-py keeps its own, 100)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin this process and redis-server to two different CPUs (pinned by default "
                             "when there are two or more: sharing one CPU makes sequential figures swing by 4x)")
    parser.add_argument("--imports", action="store_true",
                        help="also time a cold import of each client and its RSS in fresh interpreters")
    args = parser.parse_args()

    import uvloop

    server = RedisServer(persistent=False)
    if server.port == 6379:
        raise SystemExit("refusing to use port 6379 (the shared Redis)")
    server.start()
    placement = "not pinned"
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) >= 2 and server.proc is not None:
        os.sched_setaffinity(0, {cpus[0]})
        os.sched_setaffinity(server.proc.pid, {cpus[1]})
        placement = f"client pinned to CPU {cpus[0]}, redis-server to CPU {cpus[1]}"
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            samples, redis_parser = runner.run(run(server.port, args))
        import redis

        info = redis.Redis(host="127.0.0.1", port=server.port).info("server")
        redis_version = str(info["redis_version"])
    finally:
        server.close()

    print()
    print(f"Redis client CPU per round trip, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"Machine: {cpu_model()}, {_cores()} cores, {platform.system()} {platform.release()}")
    print(versions(redis_version, redis_parser))
    print(f"uvloop; client process CPU (time.process_time); median of {args.rounds} interleaved rounds; "
          f"{args.calls} calls / {args.batches} batches per measurement; pools: aiocelery {args.max_connections}, "
          f"redis-py 100; {placement}")
    print()
    head = f"{'case':<28}{'unit':<10}{'aiocelery':>11}{'redis-py':>11}{'redis-py/aiocelery':>20}"
    print(head)
    print("-" * len(head))
    for case, (label, unit) in enumerate(zip(CASES, UNITS, strict=True)):
        ours = statistics.median(samples[("aiocelery", case)])
        theirs = statistics.median(samples[("redis-py", case)])
        print(f"{label:<28}{unit:<10}{ours:>11.1f}{theirs:>11.1f}{theirs / ours:>19.1f}x")
    print()
    print("Every round (in run order):")
    for case, label in enumerate(CASES):
        for name in CLIENTS:
            print(f"  {label:<28}{name:<11}" + " ".join(f"{v:8.1f}" for v in samples[(name, case)]))

    if args.imports:
        print()
        print("Cold import in a fresh interpreter (median of 5): wall ms, RSS MiB, modules in sys.modules")
        # aiocelery._redis.client cannot be imported without the package (aiocelery/__init__.py
        # imports the app): the question is what redis.asyncio would add on top of it
        for label, stmt in (("python alone", "pass"),
                            ("import redis.asyncio", "import redis.asyncio"),
                            ("import aiocelery", "import aiocelery"),
                            ("import aiocelery, redis.asyncio", "import aiocelery, redis.asyncio")):
            ms, rss, mods = import_cost(stmt)
            print(f"  {label:<34}{ms:>8.1f} ms{rss:>8.1f} MiB{mods:>6} modules")


def _cores() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
