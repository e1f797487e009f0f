"""Rates like ``"100/s"``, ``"10/m"``, ``"500/h"``: parsed once into an emission interval."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` starts per ``per_s`` seconds, with bursts of up to ``burst`` back to back."""

    count: float
    per_s: float
    burst: int = 1
    """Starts allowed back to back; by default a tenth of ``count`` (at least 1), so a late
    start can catch up instead of losing its slot."""

    @classmethod
    def parse(cls, text: str, burst: int | None = None) -> Rate:
        """``"100/s"`` -> Rate(100, 1.0); ValueError naming the format otherwise."""
        match = _PATTERN.match(text.lower())
        if not match or match.group(2) not in _UNITS or float(match.group(1)) <= 0:
            raise ValueError(f"rate_limit {text!r} is not like '100/s', '10/m' or '500/h'")
        count = float(match.group(1))
        return cls(count, _UNITS[match.group(2)], max(1, burst if burst is not None else round(count / 10)))

    @property
    def interval_ms(self) -> float:
        """Milliseconds between two starts at the steady rate."""
        return self.per_s * 1000.0 / self.count
