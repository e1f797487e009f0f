"""Commands packed as RESP by hiredis's C ``pack_command`` (hiredis is a direct dependency)."""

from __future__ import annotations

from collections.abc import Sequence

import hiredis

CommandPart = str | bytes | int | float
"""One part of a command: its name or an argument (str is sent as UTF-8, numbers as their text)."""


def pack(args: Sequence[CommandPart]) -> bytes:
    """One command in RESP."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]  # its stub says a 1-tuple
    return packed


def evalsha(sha: str, keys: Sequence[CommandPart], args: Sequence[CommandPart]) -> bytes:
    """A packed ``EVALSHA sha numkeys keys... args...``."""
    return pack(["EVALSHA", sha, len(keys), *keys, *args])
