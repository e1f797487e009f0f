"""The wire format: encode/decode round trips, what is refused and why. Pure, no I/O."""

from __future__ import annotations

import math
from decimal import Decimal
from enum import IntEnum
from typing import Any

import orjson
import pytest

from aiocelery import EncodeError
from aiocelery.wire.message import (
    INT64_MAX,
    INT64_MIN,
    WIRE_VERSION,
    Payload,
    TaskMessage,
    check_lossless,
    decode_payload,
    decode_value,
    encode_value,
)


class Color(IntEnum):
    RED = 1


def msg(*args: Any, **kwargs: Any) -> TaskMessage:
    return TaskMessage(id="id-1", name="pkg.task", args=args, kwargs=kwargs)


def test_round_trip_of_arguments() -> None:
    args = (1, -2.5, "国学大师", None, True, [1, [2, {"a": []}]], {"k": {"n": None}}, INT64_MAX, INT64_MIN)
    kwargs = {"x": "y", "nested": {"list": [False, 0.1]}}
    data = TaskMessage(id="i", name="n", args=args, kwargs=kwargs).encode(1 << 20)
    assert isinstance(data, bytes)
    assert decode_payload(data) == Payload(list(args), kwargs)
    assert orjson.loads(data)["v"] == WIRE_VERSION


def test_tuples_become_lists() -> None:
    payload = decode_payload(msg((1, 2), pair=(3, 4)).encode(1 << 20))
    assert payload.args == [[1, 2]] and payload.kwargs == {"pair": [3, 4]}


def test_message_defaults() -> None:
    m = TaskMessage(id="i", name="n")
    assert (m.args, m.kwargs, m.queue, m.delay_ms, m.eta_ms) == ((), {}, "aiocelery", 0, None)
    assert decode_payload(m.encode(100)) == Payload([], {})


def test_payload_limit_is_inclusive() -> None:
    m = msg("x" * 50)
    size = len(m.encode(1 << 20))
    assert m.encode(size)  # exactly at the limit is fine
    with pytest.raises(EncodeError) as info:
        m.encode(size - 1)
    text = str(info.value)
    assert "'pkg.task'" in text and "id-1" in text and str(size) in text and str(size - 1) in text


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({1, 2}, "args[0]"),
        ([1, [2, b"x"]], "args[0][1][1]"),
        ({"a": {"b": float("nan")}}, "args[0]['a']['b']"),
        ({"a": [{3: "x"}]}, "args[0]['a'][0]"),
        (INT64_MAX + 1, "args[0]"),
        (INT64_MIN - 1, "args[0]"),
        (Decimal("1.5"), "args[0]"),
        (Color.RED, "args[0]"),
    ],
    ids=["set", "nested-bytes", "nested-nan", "int-key", "int64-max+1", "int64-min-1", "decimal", "intenum"],
)
def test_lossy_values_name_the_task_id_and_path(value: Any, path: str) -> None:
    with pytest.raises(EncodeError) as info:
        msg(value).encode(1 << 20)
    text = str(info.value)
    assert "'pkg.task'" in text and "id-1" in text and "nothing was sent" in text
    assert path in text


def test_lossy_kwargs_name_the_keyword() -> None:
    with pytest.raises(EncodeError, match=r"kwargs\['when'\]"):
        msg(when=math.inf).encode(1 << 20)


def test_check_lossless_accepts_json_native_values() -> None:
    check_lossless([None, True, 0, -0.0, 1e308, "", [], {}, {"a": [1, {"b": "c"}]}], msg(), "args")


def test_encode_and_decode_value() -> None:
    value = {"result": [1, 2.5, "三", None, {"ok": True}]}
    assert decode_value(encode_value(value, "the result")) == value
    assert decode_value(encode_value(None, "the result")) is None
    with pytest.raises(EncodeError, match="the result of X"):
        encode_value({1, 2}, "the result of X")
    with pytest.raises(EncodeError, match="64 bits"):
        encode_value(2**64, "r")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"{", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b'{"args": [], "kwargs": {}}', "wire version"),
        (b'{"v": 2, "args": [], "kwargs": {}}', "wire version"),
        (b'{"v": 1, "kwargs": {}}', "'args' list"),
        (b'{"v": 1, "args": [], "kwargs": []}', "'kwargs' object"),
        (b'{"v": 1, "args": {}, "kwargs": {}}', "'args' list"),
    ],
)
def test_decode_payload_errors(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_payload(data)
