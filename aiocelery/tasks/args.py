"""Machinery's typed arguments: ``Arg(type, value)`` with Machinery's type names.

``Arg("int64", "42")`` is checked and coerced to ``42`` at send time; a value that doesn't fit
the type raises a TypeError naming the argument. Plain Python values may be mixed in freely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_INT_BITS = {"int": 64, "int8": 8, "int16": 16, "int32": 32, "int64": 64}
_UINT_BITS = {"uint": 64, "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}
_FLOATS = ("float32", "float64")


@dataclass(frozen=True, slots=True)
class Arg:
    """A typed argument, as in Machinery's ``tasks.Arg{Type, Value}``; ``name`` is optional."""

    type: str
    value: Any
    name: str = ""

    def coerce(self) -> Any:
        """The value converted to the declared type; TypeError when it does not fit."""
        return coerce(self.type, self.value)


def coerce(type_name: str, value: Any) -> Any:
    """Convert ``value`` to Machinery type ``type_name`` (``"[]int64"`` for slices)."""
    if type_name.startswith("[]"):
        if not isinstance(value, list | tuple):
            raise TypeError(f"Arg type {type_name!r} needs a list, got {type(value).__name__}")
        element = type_name[2:]
        if not element.startswith("[]"):
            _converter(element)  # checks the element type even for an empty list
        return [coerce(element, item) for item in value]
    convert = _converter(type_name)
    return convert(value)


def _converter(type_name: str) -> Callable[[Any], Any]:
    if type_name in _INT_BITS:
        bits = _INT_BITS[type_name]
        return lambda v: _to_int(type_name, v, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if type_name in _UINT_BITS:
        bits = _UINT_BITS[type_name]
        return lambda v: _to_int(type_name, v, 0, 2**bits - 1)
    if type_name in _FLOATS:
        return lambda v: _to_float(type_name, v)
    if type_name == "string":
        return lambda v: _exact(type_name, v, str)
    if type_name == "bool":
        return lambda v: _exact(type_name, v, bool)
    known = ", ".join(sorted([*_INT_BITS, *_UINT_BITS, *_FLOATS, "string", "bool"]))
    raise TypeError(f"unknown Arg type {type_name!r}; use one of {known}, or '[]' + one of them")


def _exact(type_name: str, value: Any, kind: type) -> Any:
    if type(value) is not kind:
        raise TypeError(f"Arg type {type_name!r} needs a {kind.__name__}, got {value!r}")
    return value


def _to_int(type_name: str, value: Any, lo: int, hi: int) -> int:
    if type(value) is bool:
        raise TypeError(f"Arg type {type_name!r} needs an integer, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip(), 10)
        except ValueError:
            raise TypeError(f"Arg type {type_name!r} needs an integer, got {value!r}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise TypeError(f"Arg type {type_name!r} needs an integer, got {value!r}")
    if not lo <= value <= hi:
        raise TypeError(f"Arg type {type_name!r} holds {lo}..{hi}, got {value}")
    return value


def _to_float(type_name: str, value: Any) -> float:
    if type(value) is bool or not isinstance(value, int | float | str):
        raise TypeError(f"Arg type {type_name!r} needs a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise TypeError(f"Arg type {type_name!r} needs a number, got {value!r}") from None
