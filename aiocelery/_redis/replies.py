"""Shapes of raw RESP replies (hiredis gives lists and bytes) made usable."""

from __future__ import annotations

from typing import Any

Fields = dict[bytes, bytes]
Entry = tuple[bytes, Fields]


def fields(flat: list[Any] | None) -> Fields:
    """``[k1, v1, k2, v2, ...]`` as a dict (None, a deleted entry's fields: empty)."""
    if not flat:
        return {}
    return dict(zip(flat[::2], flat[1::2], strict=True))


def entries(reply: list[Any] | None) -> list[Entry]:
    """XRANGE / XREADGROUP / XAUTOCLAIM entries ``[[id, [k, v, ...]], ...]``; deleted ones (no
    fields) are left out."""
    return [(e[0], fields(e[1])) for e in reply or () if e and e[1]]


def info(reply: bytes) -> dict[str, str]:
    """An INFO section's ``name:value`` lines."""
    out: dict[str, str] = {}
    for line in reply.decode(errors="replace").splitlines():
        if line and not line.startswith("#") and ":" in line:
            name, value = line.split(":", 1)
            out[name] = value
    return out


def text(value: Any) -> str:
    """bytes decoded, anything else as ``str`` (None as empty)."""
    return value.decode() if isinstance(value, bytes) else str(value or "")
