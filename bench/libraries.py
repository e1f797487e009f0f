"""The libraries under test, each in its own cached venv, aiocelery included.

aiocelery is installed from this working tree (``pip install -e``, no extras) into
``<cache>/venvs/aiocelery``, so it runs with exactly what ``pip install aiocelery`` brings, like
the peers: not the project's dev venv, whose extras (OpenTelemetry, Prometheus) and test tools
would add to the worker's memory. If that install fails, the dev venv is used and
the run says so.

Peers are installed from PyPI with pip into ``~/.cache/aiocelery-bench/venvs/<peer>`` (override
with ``AIOCELERY_BENCH_CACHE``), outside the repository; a failed install is reported and that
peer skipped.
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

ADAPTERS = Path(__file__).resolve().parent / "adapters"
CACHE = Path(os.environ.get("AIOCELERY_BENCH_CACHE", Path.home() / ".cache" / "aiocelery-bench"))
PEERS: dict[str, list[str]] = {
    "arq": ["arq", "uvloop"],
    "saq": ["saq[hiredis]", "uvloop", "typing_extensions"],  # saq 0.26 imports it without declaring it
    "taskiq": ["taskiq", "taskiq-redis", "uvloop"],
    "streaq": ["streaq", "uvloop"],
    "celery": ["celery[redis]"],
}
"""pip requirements per peer (uvloop where the peer can run on it)."""
INSTALL_TIMEOUT_S = 900


@dataclass
class Library:
    """One library under test and how to run its adapter."""

    name: str
    python: Path
    info: dict[str, Any] = field(default_factory=dict)
    extra_path: list[Path] = field(default_factory=list)

    @property
    def adapter(self) -> Path:
        return ADAPTERS / f"{self.name}_adapter.py"

    def command(self, *args: str) -> list[str]:
        return [str(self.python), str(self.adapter), *args]

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


def peer(name: str) -> Library | None:
    """A peer in its own venv, installed on first use; None (and the reason printed) when that fails."""
    if name not in PEERS:
        print(f"bench: unknown peer {name!r}; known: {', '.join(PEERS)}", file=sys.stderr)
        return None
    venv = CACHE / "venvs" / name
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements"
    wanted = " ".join(PEERS[name])
    try:
        if not (python.exists() and marker.exists() and marker.read_text() == wanted):
            print(f"bench: installing {name} into {venv} (pip install {wanted}) ...", flush=True)
            _install(venv, python, PEERS[name])
            marker.write_text(wanted)
        return _with_info(Library(name, python))
    except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as exc:
        print(f"bench: skipping {name}: {exc}", file=sys.stderr)
        return None


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
    return lib
