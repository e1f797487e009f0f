"""The libraries under test, each in its own cached venv, aiocelery included.

aiocelery is installed from this working tree (``pip install -e``, no extras) into
``<cache>/venvs/aiocelery``, so it runs with exactly what ``pip install aiocelery`` brings, like
the peers: not the project's dev venv, whose extras (OpenTelemetry, Prometheus) and test tools
would add to the worker's memory. If that install fails, the dev venv is used and
the run says so.

Peers are installed from PyPI with pip into ``~/.cache/aiocelery-bench/venvs/<peer>`` (override
with ``AIOCELERY_BENCH_CACHE``), outside the repository; a failed install is reported and that
peer skipped.

The RabbitMQ section (``AMQP_SECTION``: names ending in ``-amqp``) runs a library with its broker on
the benchmark's RabbitMQ vhost and its results in the benchmark's Redis. Its adapter is the library's
own one with ``--amqp URL`` (``Library.args``), and its venv the library's (``VENVS``), but for
aiocelery, installed with its ``amqp`` extra into ``venvs/aiocelery-amqp``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .report import HOME as HOME
from .report import HOMES, broker_of

ADAPTERS = Path(__file__).resolve().parent / "adapters"
CACHE = Path(os.environ.get("AIOCELERY_BENCH_CACHE", Path.home() / ".cache" / "aiocelery-bench"))
PEERS: dict[str, list[str]] = {
    "arq": ["arq", "uvloop"],
    "saq": ["saq[hiredis]", "uvloop", "typing_extensions"],  # saq 0.26 imports it without declaring it
    "taskiq": ["taskiq", "taskiq-redis", "uvloop"],
    "streaq": ["streaq", "uvloop"],
    "celery": ["celery[redis]"],
    "celery-amqp": ["celery[redis]"],  # kombu brings py-amqp, the pyamqp:// transport
    "dramatiq-amqp": ["dramatiq[rabbitmq,redis]"],  # pika for the broker, redis-py for the results
}
"""pip requirements per peer (uvloop where the peer can run on it)."""
VENVS = {"celery-amqp": "celery", "dramatiq-amqp": "dramatiq"}
"""Peers that share a venv (same requirements) under another name."""
ADAPTER_OF = {"celery-amqp": "celery", "dramatiq-amqp": "dramatiq", "aiocelery-amqp": "aiocelery"}
"""Which adapter (``bench/adapters/<name>_adapter.py``) drives a library, where not its own name."""
AMQP_HOME = HOMES["amqp"]
AMQP_SECTION = (AMQP_HOME, "celery-amqp", "dramatiq-amqp")
"""The RabbitMQ section of ``--rabbitmq`` / ``make bench-vs-amqp``: aiocelery first, as on Redis."""
KNOWN = (HOME, *(p for p in PEERS if p not in AMQP_SECTION), *AMQP_SECTION)
SKIPPED: dict[str, str] = {}
"""Libraries asked for that could not run, and why (filled by ``peer`` and ``aiocelery_amqp``)."""
INSTALL_TIMEOUT_S = 900


class Unavailable(RuntimeError):
    """The adapter's ``info`` said the library cannot run here (``{"unavailable": reason}``)."""


@dataclass
class Library:
    """One library under test and how to run its adapter."""

    name: str
    python: Path
    info: dict[str, Any] = field(default_factory=dict)
    extra_path: list[Path] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    """Appended to every adapter command (``--amqp URL`` in the RabbitMQ section)."""

    @property
    def adapter(self) -> Path:
        return ADAPTERS / f"{ADAPTER_OF.get(self.name, self.name)}_adapter.py"

    @property
    def broker(self) -> str:
        return broker_of(self.name)

    def command(self, *args: str) -> list[str]:
        return [str(self.python), str(self.adapter), *args, *self.args]

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOCELERY_", "BENCH_", "VIRTUAL_ENV"))}
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (ADAPTERS, *self.extra_path))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    @property
    def has_bulk(self) -> bool:
        return bool(self.info.get("bulk"))


def aiocelery() -> Library:
    """aiocelery from this working tree, in a venv of its own holding only its runtime dependencies."""
    root = ADAPTERS.parent.parent
    venv = CACHE / "venvs" / "aiocelery"
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements"
    wanted = f"-e {root} @ {hashlib.sha256((root / 'pyproject.toml').read_bytes()).hexdigest()[:12]}"
    try:
        if not (python.exists() and marker.exists() and marker.read_text() == wanted):
            print(f"bench: installing aiocelery into {venv} (pip install -e {root}) ...", flush=True)
            _install(venv, python, ["-e", str(root)])
            marker.write_text(wanted)
        # pip byte-compiles a peer's wheel at install; an editable tree is compiled on import, and
        # not cached where PYTHONDONTWRITEBYTECODE is set (as on CI machines): every worker start
        # then paid ~0.25 s of compiling. Compile it here, once, as pip does for the peers.
        subprocess.run([str(python), "-m", "compileall", "-q", str(root / "aiocelery")], check=True)
        return _with_info(Library("aiocelery", python, extra_path=[root]))
    except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as exc:
        print(f"bench: aiocelery's own venv failed ({exc}); using the dev venv {sys.prefix}", file=sys.stderr)
        return _with_info(Library("aiocelery", Path(sys.executable), extra_path=[root]))


def aiocelery_amqp(amqp_url: str) -> Library | None:
    """aiocelery with its broker on RabbitMQ: the working tree with its ``amqp`` extra (aio-pika), in
    ``venvs/aiocelery-amqp``; None (and the reason printed) when it cannot run here, as before
    ``aiocelery/brokers/amqp`` is in the tree (Config refuses amqp:// URLs then)."""
    root = ADAPTERS.parent.parent
    venv = CACHE / "venvs" / AMQP_HOME
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements"
    wanted = f"-e {root}[amqp] @ {hashlib.sha256((root / 'pyproject.toml').read_bytes()).hexdigest()[:12]}"
    lib = Library(AMQP_HOME, python, extra_path=[root], args=["--amqp", amqp_url])
    try:
        if not (python.exists() and marker.exists() and marker.read_text() == wanted):
            print(f"bench: installing aiocelery[amqp] into {venv} (pip install -e {root}[amqp]) ...", flush=True)
            _install(venv, python, ["-e", f"{root}[amqp]"])
            marker.write_text(wanted)
        subprocess.run([str(python), "-m", "compileall", "-q", str(root / "aiocelery")], check=True)
    except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as exc:
        print(f"bench: aiocelery-amqp's own venv failed ({exc}); using the dev venv {sys.prefix}", file=sys.stderr)
        lib.python = Path(sys.executable)
    return _checked(lib)


def peer(name: str, amqp_url: str | None = None) -> Library | None:
    """A peer in its own venv, installed on first use; None (and the reason printed) when that fails.
    A peer of the RabbitMQ section needs the benchmark vhost's ``amqp_url``."""
    if name not in PEERS:
        print(f"bench: unknown peer {name!r}; known: {', '.join(KNOWN)}", file=sys.stderr)
        return None
    if broker_of(name) == "amqp" and not amqp_url:
        raise ValueError(f"{name} runs on RabbitMQ: give the benchmark vhost's URL")
    venv = CACHE / "venvs" / VENVS.get(name, name)
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements"
    wanted = " ".join(PEERS[name])
    try:
        if not (python.exists() and marker.exists() and marker.read_text() == wanted):
            print(f"bench: installing {name} into {venv} (pip install {wanted}) ...", flush=True)
            _install(venv, python, PEERS[name])
            marker.write_text(wanted)
    except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as exc:
        _skip(name, str(exc))
        return None
    args = ["--amqp", amqp_url] if amqp_url and broker_of(name) == "amqp" else []
    return _checked(Library(name, python, args=args))


def _checked(lib: Library) -> Library | None:
    """``lib`` with its adapter's ``info``, or None (the reason printed and kept in SKIPPED)."""
    try:
        return _with_info(lib)
    except Unavailable as exc:
        _skip(lib.name, f"unavailable: {exc}")
    except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as exc:
        _skip(lib.name, str(exc))
    return None


def _skip(name: str, reason: str) -> None:
    """Print why ``name`` does not run, and keep it in SKIPPED for the run's header."""
    SKIPPED[name] = reason
    print(f"bench: skipping {name}: {reason}", file=sys.stderr)


def _install(venv: Path, python: Path, requirements: list[str]) -> None:
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    _run([str(python), "-m", "pip", "install", "-q", *requirements])


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {' / '.join(tail)}")


def _with_info(lib: Library) -> Library:
    proc = subprocess.run(lib.command("info"), capture_output=True, text=True, timeout=120, env=lib.env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{lib.name} adapter `info` failed: {proc.stderr.strip()[-500:]}")
    lib.info = json.loads(proc.stdout.strip().splitlines()[-1])
    if "unavailable" in lib.info:
        raise Unavailable(str(lib.info["unavailable"]))
    lib.info.setdefault("broker", "Redis" if lib.broker == "redis" else "RabbitMQ")
    return lib
