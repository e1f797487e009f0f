"""Machinery's typed arguments: ``Arg(type, value)`` checked and coerced. Pure, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from aiocelery import Arg
from aiocelery.tasks.args import coerce


@pytest.mark.parametrize(
    ("type_name", "value", "expected"),
    [
        ("string", "国学大师", "国学大师"),
        ("string", "", ""),
        ("int64", "5", 5),
        ("int64", " -7 ", -7),
        ("int64", 5, 5),
        ("int64", 5.0, 5),
        ("int64", str(2**63 - 1), 2**63 - 1),
        ("int64", str(-(2**63)), -(2**63)),
        ("int", "12", 12),
        ("int8", "127", 127),
        ("int8", -128, -128),
        ("int16", 32767, 32767),
        ("int32", "-2147483648", -(2**31)),
        ("uint8", "255", 255),
        ("uint8", 0, 0),
        ("uint16", 65535, 65535),
        ("uint64", str(2**64 - 1), 2**64 - 1),
        ("float64", "1.5", 1.5),
        ("float64", 2, 2.0),
        ("float32", "-0.25", -0.25),
        ("bool", True, True),
        ("bool", False, False),
        ("[]string", ["a", "b"], ["a", "b"]),
        ("[]string", (), []),
        ("[]int64", ["1", 2, 3.0], [1, 2, 3]),
        ("[]uint8", (0, "255"), [0, 255]),
        ("[]float64", ["1", 2], [1.0, 2.0]),
        ("[]bool", [True, False], [True, False]),
    ],
)
def test_coerce_accepts(type_name: str, value: Any, expected: Any) -> None:
    result = coerce(type_name, value)
    assert result == expected
    assert type(result) is type(expected)
    assert Arg(type_name, value).coerce() == expected


@pytest.mark.parametrize(
    ("type_name", "value", "fragment"),
    [
        ("int8", "128", "-128..127"),
        ("int8", -129, "-128..127"),
        ("int16", 2**15, "-32768..32767"),
        ("int64", 2**63, "int64"),
        ("int64", "5.5", "needs an integer"),
        ("int64", 5.5, "needs an integer"),
        ("int64", "five", "needs an integer"),
        ("int64", True, "needs an integer"),
        ("int64", None, "needs an integer"),
        ("uint8", -1, "0..255"),
        ("uint8", "-1", "0..255"),
        ("uint8", 256, "0..255"),
        ("uint64", 2**64, "uint64"),
        ("float64", "abc", "needs a number"),
        ("float64", True, "needs a number"),
        ("float64", [1.0], "needs a number"),
        ("float64", None, "needs a number"),
        ("string", 5, "needs a str"),
        ("string", None, "needs a str"),
        ("bool", "true", "needs a bool"),
        ("bool", 1, "needs a bool"),
        ("[]string", "ab", "needs a list"),
        ("[]int64", {"a": 1}, "needs a list"),
        ("[]int8", [1, 300], "-128..127"),
        ("[]string", ["a", 1], "needs a str"),
    ],
)
def test_coerce_rejects_with_a_type_error(type_name: str, value: Any, fragment: str) -> None:
    with pytest.raises(TypeError) as info:
        coerce(type_name, value)
    assert type_name.removeprefix("[]") in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("type_name", "value"),
    [("complex128", "1"), ("str", "1"), ("integer", 1), ("", "1"), ("map[string]int", {}), ("[]nope", ["1"]),
     ("[][]", [["1"]])],
)
def test_unknown_type_is_a_type_error_listing_known_ones(type_name: str, value: Any) -> None:
    with pytest.raises(TypeError, match="unknown Arg type") as info:
        coerce(type_name, value)
    assert "int64" in str(info.value) and "string" in str(info.value)


def test_unknown_element_type_of_an_empty_slice_is_rejected() -> None:
    with pytest.raises(TypeError, match="unknown Arg type"):
        coerce("[]nope", [])


def test_nested_slices() -> None:
    assert coerce("[][]int8", [["1"], [2, 3]]) == [[1], [2, 3]]


def test_arg_is_a_small_frozen_value() -> None:
    arg = Arg("int64", "1")
    assert (arg.type, arg.value, arg.name) == ("int64", "1", "")
    assert Arg("int64", "1", name="a") != arg
    with pytest.raises(AttributeError):
        arg.value = "2"  # type: ignore[misc]
