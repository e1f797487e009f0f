"""What RabbitMQ itself costs a sender: raw aio-pika publishes, no aiocelery, on this machine.

    .venv/bin/python -m bench.amqp_floor [--n 2000]

Prints publishes per second for each queue type (quorum, classic) and delivery mode (persistent,
transient), one at a time (each awaits its publisher confirm, as ``delay()`` does) and 1,000 in
flight, with and without publisher confirms. One-by-one sends with confirms cannot go faster
than the first row, whatever the client does: each waits for RabbitMQ to write the message (and,
for a quorum queue, to commit it to its log) before it confirms.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aio_pika

from .rabbitmq_ctl import BenchRabbitMQ


async def _rate(exchange: aio_pika.abc.AbstractExchange, queue: str, n: int, *, persistent: bool,
                in_flight: int) -> float:
    mode = aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
    start = time.perf_counter()
    for first in range(0, n, in_flight):
        await asyncio.gather(*(exchange.publish(aio_pika.Message(b"1 id", delivery_mode=mode), routing_key=queue)
                               for _ in range(first, min(n, first + in_flight))))
    return n / (time.perf_counter() - start)


async def measure(url: str, n: int) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    connection = await aio_pika.connect(url)
    try:
        for confirms in (True, False):
            channel = await connection.channel(publisher_confirms=confirms)
            exchange = await channel.declare_exchange("floor", "direct", durable=True)
            for queue_type in ("quorum", "classic"):
                queue = await channel.declare_queue(f"floor-{queue_type}", durable=True,
                                                    arguments={"x-queue-type": queue_type})
                await queue.bind(exchange, routing_key=queue.name)
                for persistent in (True, False):
                    for in_flight in (1, 1000):
                        rate = await _rate(exchange, queue.name, n, persistent=persistent, in_flight=in_flight)
                        label = (f"{queue_type:<8} {'persistent' if persistent else 'transient ':<10} "
                                 f"{'one at a time' if in_flight == 1 else '1,000 in flight':<16} "
                                 f"{'confirms' if confirms else 'no confirms'}")
                        rows.append((label, rate))
                await queue.purge()
            await channel.close()
    finally:
        await connection.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.amqp_floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="publishes per row (default 2,000)")
    args = parser.parse_args()
    with BenchRabbitMQ() as rabbit:
        print(f"RabbitMQ {rabbit.version()}, raw aio-pika {aio_pika.__version__}, {args.n} publishes per row")
        for label, rate in asyncio.run(measure(rabbit.url, args.n)):
            print(f"  {label:<60} {rate:>9,.0f} /s")


if __name__ == "__main__":
    main()
