"""The benchmark suite: aiocelery, optionally against its peers, on the same workloads.

Starts its own redis-server on a free port (persistence off; FLUSHALL between runs, only there),
runs each workload ``--repeat`` times (libraries interleaved, their order rotated each repeat) and
prints medians with min-max, the machine and the versions.

    python -m bench.run --quick                 # make bench: aiocelery only, small sizes, 1 repeat
    python -m bench.run                         # make bench-full: full sizes, 3 repeats
    python -m bench.run --vs arq,saq,taskiq,streaq,celery   # make bench-vs (then make bench-vs-amqp)
    python -m bench.run --rabbitmq --out .bench/amqp         # make bench-vs-amqp: the RabbitMQ section
    python -m bench.run --quick --rabbitmq --workloads W1,W2 # a quick look at it
    python -m bench.run --workloads W1,W2 --repeat 1

RabbitMQ section (--rabbitmq, or any of its names in --vs): aiocelery-amqp, celery-amqp and
dramatiq-amqp, each with its broker on the machine's RabbitMQ (127.0.0.1:5672, guest/guest; `make
rabbitmq` installs and starts it) in a vhost the benchmark creates (aiocelery-bench-<hex>),
recreates before every run and deletes at the end, and its results in the benchmark's Redis:
  aiocelery-amqp  Config(broker="amqp://guest:guest@127.0.0.1:5672/<vhost>", result_backend=<Redis>);
                  skipped, saying why, until aiocelery/brokers/amqp is in the tree
  celery-amqp     Celery's standard deployment: broker pyamqp://.../<vhost>, Redis result backend
  dramatiq-amqp   dramatiq's RabbitmqBroker, results through its Results middleware on Redis
It has its own table, its own "aiocelery-amqp / best peer" column, a RabbitMQ CPU row (the node's
Erlang VM, during W1) and a check against the goals: W1 drain >= 5,000/s and >= 5x celery-amqp,
W2 p50 <= 2 ms, W1 one-by-one send >= 3,000/s. With --rabbitmq, aiocelery on Redis runs only if
--vs names it ("aiocelery").

Workloads (identical for every library; the adapters in bench/adapters/ say how each is driven):
  W1  20,000 no-op tasks sent one by one with the worker stopped (enqueue rate), then one worker
      process at concurrency 100 drains them (from its start to the last stored result)
  W2  one client sends a task and awaits its result, 1,000 times in sequence (p50/p95/p99)
  W3  2,000 tasks of sleep(0.1) to an idle worker at concurrency 500 (wall time; ideal 0.4 s)
  W4  the worker's peak memory during W1
  W5  worker CPU and Redis CPU per 1,000 tasks, Redis commands per task, during W1 (RabbitMQ
      section: also RabbitMQ's CPU per 1,000 tasks)
  W6  20,000 tasks through the batch API (aiocelery: app.send_many) with no worker
  W7  20,000 no-op tasks sent with W1's single-send call from 1,000 concurrent coroutines (Celery: a
      thread pool) with no worker (enqueue rate); the queue must then hold all of them
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from . import libraries, report
from .libraries import Library
from .processes import RunError
from .rabbitmq_ctl import BenchRabbitMQ
from .redis_ctl import BenchRedis
from .workloads import FULL, QUICK, WORKLOADS, Context, Sizes

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".bench"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (make bench)")
    size.add_argument("--full", action="store_true", help="full sizes, 3 repeats (the default)")
    parser.add_argument("--vs", default="", metavar="LIST",
                        help=f"peers to compare with, comma-separated: {','.join(libraries.KNOWN[1:])}")
    parser.add_argument("--rabbitmq", action="store_true",
                        help=f"the RabbitMQ section: {','.join(libraries.AMQP_SECTION)} (make bench-vs-amqp); "
                             "needs RabbitMQ on 127.0.0.1:5672 (make rabbitmq)")
    parser.add_argument("--repeat", type=int, default=None, help="runs of each workload (default: 3, quick: 1)")
    parser.add_argument("--workloads", default="W1,W2,W3,W6,W7", metavar="W1,W2,...",
                        help="which to run (W4 and W5 come with W1)")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="where the raw results, the Markdown table and the logs go (default: .bench/)")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="only print the tables (text and Markdown) of a saved last-run.json")
    args = parser.parse_args(argv)
    args.workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)} (W4, W5 come with W1)")
    args.repeat = args.repeat or (1 if args.quick else 3)
    return args


def library_names(vs: str, rabbitmq: bool) -> list[str]:
    """What to run: aiocelery (on Redis) or with ``rabbitmq`` the RabbitMQ section, then ``vs``; no repeats."""
    names = list(libraries.AMQP_SECTION) if rabbitmq else [libraries.HOME]
    for name in (p.strip() for p in vs.split(",") if p.strip()):
        if name not in names:
            names.append(name)
    return names


def load_libraries(names: list[str], amqp_url: str | None) -> list[Library]:
    libs = []
    for name in names:
        if name == libraries.HOME:
            lib: Library | None = libraries.aiocelery()
        elif name == libraries.AMQP_HOME:
            assert amqp_url is not None
            lib = libraries.aiocelery_amqp(amqp_url)
        else:
            lib = libraries.peer(name, amqp_url)
        if lib is not None:
            libs.append(lib)
    return libs


def run_all(ctx: Context, libs: list[Library], workloads: list[str], repeat: int,
            ) -> tuple[report.Results, dict[str, set[str]]]:
    results: report.Results = {lib.name: {} for lib in libs}
    failed: dict[str, set[str]] = {}
    for rep in range(repeat):
        order = libs[rep % len(libs):] + libs[:rep % len(libs)]  # rotate: no library always goes first
        for workload in workloads:
            for lib in order:
                started = time.monotonic()
                try:
                    values = WORKLOADS[workload](ctx, lib)
                except RunError as exc:
                    failed.setdefault(lib.name, set()).add(workload)
                    print(f"[{rep + 1}/{repeat}] {workload} {lib.name}: FAILED: {exc}", flush=True)
                    continue
                for key, value in values.items():
                    results[lib.name].setdefault(key, []).append(value)
                shown = ", ".join(f"{k} {v:,.3g}" for k, v in values.items()) or "n/a"
                print(f"[{rep + 1}/{repeat}] {workload} {lib.name} ({time.monotonic() - started:.0f} s): {shown}",
                      flush=True)
    return results, failed


def describe(libs: list[Library], redis: BenchRedis, rabbit: BenchRabbitMQ | None, sizes: Sizes, repeat: int,
             load: str) -> list[str]:
    rabbit_line = ([f"RabbitMQ {rabbit.version()}: the machine's, 127.0.0.1:5672, vhost {rabbit.vhost} "
                    "(recreated before every run, deleted at the end); results in the Redis above"]
                   if rabbit is not None else [])
    return [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {report.machine(redis.version())}; load average (1 min) {load}",
        *rabbit_line,
        *(f"{lib.name}: {lib.info['version']}, loop {lib.info['loop']}; broker: {lib.info['broker']}; "
          f"results: {lib.info['result_api']}" for lib in libs),
        *(f"{name}: skipped: {reason}" for name, reason in libraries.SKIPPED.items()),
        f"sizes: W1 {sizes.w1_tasks:,} tasks, worker -c {sizes.w1_concurrency}; W2 {sizes.w2_rounds:,} round trips "
        f"(at most {sizes.w2_max_s:.0f} s); W3 {sizes.w3_tasks:,} x sleep(0.1) at -c {sizes.w3_concurrency}; "
        f"W6 {sizes.w6_tasks:,} tasks; W7 {sizes.w7_tasks:,} tasks, 1,000 sends at once; {repeat} run(s) each: "
        + ("median (min-max)" if repeat > 1 else "one run"),
    ]


def tables(results: report.Results, names: list[str], failed: dict[str, set[str]], workloads: list[str],
           runs: int) -> tuple[str, str]:
    """The text and the Markdown of every section's table (a title over each when there are two), with
    the goals of the sections that have them."""
    text, markdown = [], []
    parts = report.sections(names)
    for broker, libs in parts:
        table = report.rows(results, libs, failed, workloads, runs, broker)
        title = report.SECTIONS[broker]
        goal_lines = report.goals(results, broker, workloads)
        text.append((f"{title}\n\n" if len(parts) > 1 or broker != "redis" else "") + report.render_text(table)
                    + "".join(f"\n  goal: {line}" for line in goal_lines))
        markdown.append((f"### {title}\n\n" if len(parts) > 1 or broker != "redis" else "")
                        + report.render_markdown(table)
                        + ("\n\n" + "\n".join(f"- goal: {line}" for line in goal_lines) if goal_lines else ""))
    return "\n\n".join(text), "\n\n".join(markdown)


def render(path: Path) -> int:
    """Print the text and Markdown tables of a saved run."""
    saved = json.loads(path.read_text())
    results, names = saved["results"], list(saved["libraries"])
    failed = {k: set(v) for k, v in saved["failed"].items()}
    workloads = sorted({m.workload for m in report.METRICS for r in results.values() if m.key in r})
    runs = max(len(v) for r in results.values() for v in r.values())
    text, markdown = tables(results, names, failed, workloads, runs)
    print("\n".join(saved["header"]) + "\n\n" + text + "\n\n" + markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render(args.render)
    sizes = QUICK if args.quick else FULL
    names = library_names(args.vs, args.rabbitmq)
    unknown = [name for name in names if name not in libraries.KNOWN]
    if unknown:
        print(f"bench: unknown libraries {unknown}; known: {', '.join(libraries.KNOWN)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="logs-", dir=args.out))
    with contextlib.ExitStack() as stack:
        rabbit = None
        if any(report.broker_of(name) == "amqp" for name in names):
            try:
                rabbit = stack.enter_context(BenchRabbitMQ())
            except RuntimeError as exc:  # RabbitMQ not answering, or rabbitmqctl failing
                print(f"bench: FAILED: the RabbitMQ section needs the machine's RabbitMQ: {exc}", file=sys.stderr)
                return 2
            print(f"bench: RabbitMQ {rabbit.version()} on 127.0.0.1:5672, vhost {rabbit.vhost}", flush=True)
        libs = load_libraries(names, rabbit.url if rabbit is not None else None)
        if not libs:
            print("bench: FAILED: none of the libraries asked for can run (see above)", file=sys.stderr)
            return 2
        redis = stack.enter_context(BenchRedis())
        print(f"bench: redis-server {redis.version()} on {redis.url} (persistence off); logs in {logs}", flush=True)
        load_before = os.getloadavg()[0]
        results, failed = run_all(Context(redis, sizes, logs, rabbit), libs, args.workloads, args.repeat)
        load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
        header = describe(libs, redis, rabbit, sizes, args.repeat, load)
    ran = [lib.name for lib in libs]
    text, markdown = tables(results, ran, failed, args.workloads, args.repeat)
    print("\n" + "\n".join(header) + "\n\n" + text, flush=True)
    (args.out / "last-run.md").write_text("\n".join(f"- {line}" for line in header) + "\n\n" + markdown + "\n")
    (args.out / "last-run.json").write_text(json.dumps(
        {"header": header, "sizes": dataclasses.asdict(sizes), "results": results,
         "failed": {k: sorted(v) for k, v in failed.items()}, "libraries": {lib.name: lib.info for lib in libs},
         "skipped": libraries.SKIPPED},
        indent=1))
    print(f"\nbench: raw results in {args.out / 'last-run.json'}, Markdown table in {args.out / 'last-run.md'}")
    return 1 if any(failed.get(home) for home in report.HOMES.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
