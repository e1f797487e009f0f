"""The wire format: what a task message is, and how it becomes bytes and back.

Only JSON-native values travel: ``None``, ``bool``, ``int`` (64-bit), finite ``float``, ``str``,
``list``/``tuple`` and ``dict`` with ``str`` keys. Anything that would not come back as the same
value (sets, bytes, NaN, datetimes, huge ints) is refused at send time with an error that names
the task, the id and the path to the bad value, before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from aiocelery.exceptions import EncodeError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
WIRE_VERSION = 1


@dataclass(slots=True)
class TaskMessage:
    """One task to run: its id, name, arguments and routing.

    Not frozen: a frozen dataclass of 13 fields costs 4 µs to build against 1 µs, a tenth of a
    bulk send's whole budget per task. Only ``on_publish`` hooks change one (its ``headers``).
    """

    id: str
    name: str
    args: tuple[Any, ...] | list[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "aiocelery"
    delay_ms: int = 0
    """Run no earlier than this many ms after the broker receives it (Redis server time)."""
    eta_ms: int | None = None
    """Run no earlier than this absolute Unix time in ms (overrides ``delay_ms``)."""
    expires_ms: int | None = None
    """Never start after this absolute Unix time in ms: it ends REVOKED (reason ``expired``)."""
    expires_in_ms: int | None = None
    """Never start later than this many ms after the broker receives it (broker time)."""
    dedup_key: str | None = None
    """While this key lives, sending again returns the task holding it."""
    dedup_ttl_ms: int = 0
    """How long the dedup key lives."""
    wf: bytes = b""
    """What follows this task in a workflow (``workflow.Wf`` JSON)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Free-form string headers travelling with the task (trace context, ...); hooks write them."""

    def encode(self, max_bytes: int) -> bytes:
        """The payload bytes (arguments only; the rest travels in the task record's fields)."""
        check_lossless(self.args, self, "args")
        check_lossless(self.kwargs, self, "kwargs")
        try:
            body: dict[str, Any] = {"v": WIRE_VERSION, "args": self.args, "kwargs": self.kwargs}
            if self.headers:
                body["headers"] = self.headers
            data = dumps(body)
        except TypeError as exc:  # defensive: check_lossless admits only orjson-native values
            raise EncodeError(f"task {self.name!r} (id {self.id}): {exc}") from exc
        if len(data) > max_bytes:
            raise EncodeError(
                f"task {self.name!r} (id {self.id}): encoded arguments are {len(data)} bytes, over "
                f"the limit of {max_bytes} (Config.max_payload_bytes); pass a reference (a key or "
                "URL) instead of the data"
            )
        return data


@dataclass(frozen=True, slots=True)
class Payload:
    """Decoded arguments of a delivery."""

    args: list[Any]
    kwargs: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def decode_payload(data: bytes) -> Payload:
    """Parse payload bytes; raises ValueError with a reason when they are not a valid payload."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"payload is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("payload is not a JSON object")
    if obj.get("v") != WIRE_VERSION:
        raise ValueError(f"payload has wire version {obj.get('v')!r}, expected {WIRE_VERSION}")
    args, kwargs = obj.get("args"), obj.get("kwargs")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("payload lacks an 'args' list or a 'kwargs' object")
    headers = obj.get("headers") or {}
    return Payload(args, kwargs, headers if isinstance(headers, dict) else {})


def encode_value(value: Any, what: str) -> bytes:
    """Encode a result value losslessly; ``what`` names it in the error."""
    if not _lossless(value):
        _walk(value, what)
    return dumps(value)


def dumps(value: Any) -> bytes:
    """``orjson.dumps`` copied into a bytes object of its own size, for bytes that are kept (a
    payload waiting to be sent, a result). orjson's own bytes object keeps its whole working
    buffer: 200,000 small payloads held 798 MiB (29 MiB copied), and building 20,000 that are
    kept cost 2.5 µs each (0.7 copied)."""
    return bytes(memoryview(orjson.dumps(value)))


def decode_value(data: bytes) -> Any:
    """Decode a value stored by ``encode_value``."""
    return orjson.loads(data)


def check_lossless(value: Any, msg: TaskMessage, where: str) -> None:
    """Raise EncodeError naming the task when ``value`` would not survive the round trip."""
    if _lossless(value):
        return
    try:
        _walk(value, where)
    except EncodeError as exc:
        raise EncodeError(f"task {msg.name!r} (id {msg.id}): {exc}; nothing was sent") from None


def _lossless(value: Any) -> bool:
    """True when ``value`` survives JSON unchanged: the fast check, building no path strings."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return INT64_MIN <= value <= INT64_MAX  # type: ignore[no-any-return]
    if kind is float:
        return math.isfinite(value)
    if kind is list or kind is tuple:
        for item in value:  # noqa: SIM110 - a loop, not all(): cheaper for the short lists most calls have
            if not _lossless(item):
                return False
        return True
    if kind is dict:
        for key, item in value.items():  # noqa: SIM110 - as above
            if type(key) is not str or not _lossless(item):
                return False
        return True
    return False


def _walk(value: Any, path: str) -> None:
    """Raise EncodeError with the path to the first value ``_lossless`` refuses (the slow, telling check)."""
    kind = type(value)
    if kind is list or kind is tuple:
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]")
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise EncodeError(f"{path} has a key {key!r} of type {type(key).__name__}; keys must be str")
            _walk(item, f"{path}[{key!r}]")
    else:
        _check_scalar(value, kind, path)


def _check_scalar(value: Any, kind: type, path: str) -> None:
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise EncodeError(f"{path} = {value} does not fit in 64 bits; send it as a str")
        return
    if kind is float:
        if not math.isfinite(value):
            raise EncodeError(f"{path} = {value} is not a finite number; JSON cannot carry it")
        return
    raise EncodeError(
        f"{path} is a {kind.__name__}, which does not survive JSON unchanged; "
        "convert it to a str, int, float, bool, None, list or dict"
    )
