"""The machine's RabbitMQ, for the tests and the benchmark: a probe, ``rabbitmqctl``, throwaway vhosts.

Unlike Redis (a throwaway ``redis-server`` per session, ``redis_server.py``), RabbitMQ runs once
per machine: ``make rabbitmq`` installs Debian's ``rabbitmq-server`` when it is missing and starts
it on 127.0.0.1:5672 (user guest/guest). Tests keep apart in a vhost of their own, created and
deleted with ``rabbitmqctl`` (run as root, or as a user holding the node's Erlang cookie; each
call takes ~0.4 s, so the tests share one vhost per session).

Standard library only: the benchmark driver imports this module too.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote

HOST = "127.0.0.1"
PORT = 5672
USER = "guest"
PASSWORD = "guest"
NOT_RUNNING = (f"RabbitMQ does not answer AMQP on {HOST}:{PORT}: run `make rabbitmq` (it installs Debian's "
               "rabbitmq-server if missing, starts it and waits for it)")
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
"""AMQP 0-9-1's protocol header; a broker answers it with a Connection.Start method frame (type 1)."""


class RabbitMQError(RuntimeError):
    """A ``rabbitmqctl`` call failed, or RabbitMQ is not there."""


def answers(host: str = HOST, port: int = PORT, timeout_s: float = 2.0) -> bool:
    """True when an AMQP broker answers on ``host:port`` (the protocol header gets a Connection.Start)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            s.sendall(AMQP_HEADER)
            return s.recv(1) == b"\x01"
    except OSError:
        return False


def _binary() -> str:
    found = shutil.which("rabbitmqctl")
    if found:
        return found
    for candidate in ("/usr/sbin/rabbitmqctl", "/usr/lib/rabbitmq/bin/rabbitmqctl"):
        if os.access(candidate, os.X_OK):  # /usr/sbin is not on every user's PATH
            return candidate
    raise RabbitMQError("rabbitmqctl is not installed: run `make rabbitmq` (apt-get install rabbitmq-server)")


def rabbitmqctl(*args: str, timeout_s: float = 60.0) -> str:
    """Run ``rabbitmqctl -q <args>`` and return its standard output; RabbitMQError (with its stderr) on failure."""
    cmd = [_binary(), "-q", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RabbitMQError(f"`rabbitmqctl {' '.join(args)}` did not finish within {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip() or "no output").replace("\n", " / ")
        raise RabbitMQError(f"`rabbitmqctl {' '.join(args)}` failed with code {proc.returncode}: {detail}")
    return proc.stdout


def create_vhost(prefix: str = "aiocelery-test", name: str | None = None) -> str:
    """Add vhost ``<prefix>-<random hex>`` (or ``name``) and give ``guest`` every permission on it."""
    vhost = name or f"{prefix}-{secrets.token_hex(6)}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, USER, ".*", ".*", ".*")
    except RabbitMQError:
        delete_vhost(vhost)
        raise
    return vhost


def delete_vhost(vhost: str) -> None:
    """Delete the vhost with its queues, exchanges and messages (RabbitMQ closes its connections)."""
    rabbitmqctl("delete_vhost", vhost)


def amqp_url(vhost: str, scheme: str = "amqp") -> str:
    """``amqp://guest:guest@127.0.0.1:5672/<vhost>``, the vhost URL-quoted (``pyamqp`` for Celery)."""
    return f"{scheme}://{USER}:{PASSWORD}@{HOST}:{PORT}/{quote(vhost, safe='')}"


def close_all_connections(vhost: str, explanation: str = "closed by the aiocelery tests") -> str:
    """Close every client connection of ``vhost`` from the server's side (clients see a
    CONNECTION_FORCED close with ``explanation``): ``rabbitmqctl close_all_connections -p <vhost> <explanation>``."""
    return rabbitmqctl("close_all_connections", "-p", vhost, explanation)


def connections(vhost: str, *columns: str) -> list[list[str]]:
    """The ``columns`` of each client connection open on ``vhost`` now. (``list_connections``
    ignores ``-p`` and lists the whole node's, so the rows are filtered on the vhost column.)"""
    out = rabbitmqctl("list_connections", "--no-table-headers", "vhost", *columns)
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    return [row[1:] for row in rows if row[0] == vhost]


def connection_count(vhost: str) -> int:
    """Client connections open on ``vhost`` now."""
    return len(connections(vhost))


def queue_depth(vhost: str, queue: str) -> int | None:
    """Messages in ``queue`` of ``vhost`` (ready and unacknowledged), or None when there is no such queue."""
    out = rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", "name", "messages")
    for line in out.splitlines():
        name, _, messages = line.rpartition("\t")
        if name == queue:
            return int(messages)
    return None


def server_pid() -> int | None:
    """The pid of the RabbitMQ node's Erlang VM (``beam.smp`` running ``rabbit``), or None."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "beam.smp":
                continue
            if b"rabbit" in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    return None
