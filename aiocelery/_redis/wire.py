"""RESP packing in C (hiredis, a dependency through ``redis[hiredis]``)."""

from __future__ import annotations

from collections.abc import Sequence

import hiredis

Arg = str | bytes | int | float


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]  # its stub says a 1-tuple
    return packed


def evalsha(sha: str, keys: Sequence[Arg], args: Sequence[Arg]) -> bytes:
    """A packed ``EVALSHA sha numkeys keys... args...``."""
    return pack(["EVALSHA", sha, len(keys), *keys, *args])
