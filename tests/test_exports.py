"""The public API is small and explicit (docs/style.md), like httpx's test_exported_members."""

from __future__ import annotations

import ast
import inspect
import re
import types
from pathlib import Path

import pytest

import aiocelery

INIT = Path(aiocelery.__file__)


def _bound_in_init() -> set[str]:
    """Every name ``__init__.py`` binds at module level (re-exports and assignments)."""
    names: set[str] = set()
    for node in ast.parse(INIT.read_text("utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names - {"__all__"}


def test_all_is_sorted_and_unique() -> None:
    assert aiocelery.__all__ == sorted(aiocelery.__all__)
    assert len(set(aiocelery.__all__)) == len(aiocelery.__all__)


def test_every_name_in_all_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from aiocelery import *", namespace)
    for name in aiocelery.__all__:
        assert hasattr(aiocelery, name), name
        assert namespace[name] is getattr(aiocelery, name)


def test_every_public_name_of_init_is_in_all() -> None:
    public = {name for name in _bound_in_init() if not name.startswith("_")} | {"__version__"}
    assert public == set(aiocelery.__all__)
    # Nothing public sneaks in at runtime either (submodules aside, which import binds by itself).
    runtime = {name for name, value in vars(aiocelery).items()
               if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert runtime == set(aiocelery.__all__) - {"__version__"}


def test_reexports_use_the_explicit_as_form() -> None:
    for node in ast.parse(INIT.read_text("utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            assert (node.module or "").startswith("aiocelery."), "import from the package's own modules only"
            for alias in node.names:
                assert alias.asname == alias.name, f"use `from aiocelery.x import {alias.name} as {alias.name}`"


def test_version_is_a_string() -> None:
    assert isinstance(aiocelery.__version__, str) and aiocelery.__version__.count(".") == 2


PUBLIC = [name for name in aiocelery.__all__ if name != "__version__"]


def _own_doc(obj: object) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    # dataclasses invent ``Name(field: type, ...)`` when a class has no docstring.
    name = getattr(obj, "__name__", "")
    return "" if inspect.isclass(obj) and doc.startswith(f"{name}(") else doc.strip()


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(aiocelery, name)
    assert _own_doc(obj), f"aiocelery.{name} has no docstring"


@pytest.mark.parametrize("name", [n for n in PUBLIC if inspect.isclass(getattr(aiocelery, n))])
def test_public_methods_of_public_classes_have_docstrings(name: str) -> None:
    cls = getattr(aiocelery, name)
    missing = []
    for attr, value in vars(cls).items():
        if attr.startswith("_"):
            continue
        target = value.fget if isinstance(value, property) else value
        if isinstance(target, staticmethod | classmethod):
            target = target.__func__
        if inspect.isfunction(target) and not (target.__doc__ or "").strip():
            missing.append(attr)
    assert missing == [], f"{name}: {missing} lack docstrings"


def test_exception_tree_has_one_root() -> None:
    errors = [getattr(aiocelery, n) for n in PUBLIC
              if inspect.isclass(getattr(aiocelery, n)) and issubclass(getattr(aiocelery, n), BaseException)]
    assert len(errors) >= 20
    assert all(issubclass(e, aiocelery.AioCeleryError) for e in errors)
    assert issubclass(aiocelery.TaskArgumentsError, TypeError)
    assert issubclass(aiocelery.EncodeError, ValueError)
    assert issubclass(aiocelery.ConfigError, ValueError)
    assert issubclass(aiocelery.DeadLetterError, ValueError)
    assert issubclass(aiocelery.NotRegistered, KeyError)
    assert issubclass(aiocelery.ResultTimeout, TimeoutError)
    assert issubclass(aiocelery.SendError, aiocelery.BrokerError)
    for task_error in (aiocelery.TaskFailed, aiocelery.TaskDead, aiocelery.TaskRevoked):
        assert issubclass(task_error, aiocelery.TaskError)
    for result_error in (aiocelery.ResultNotFound, aiocelery.ResultTimeout, aiocelery.ResultLost):
        assert issubclass(result_error, aiocelery.ResultError)


def test_the_drawn_tree_is_the_class_tree() -> None:
    """exceptions.py's docstring draws every error class under its real parent, and every one is exported."""
    from aiocelery import exceptions

    drawn: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for line in (exceptions.__doc__ or "").splitlines():
        found = re.match(r"^[\s│├└─]*(\w+)", line)
        if not found or found.group(1) not in vars(exceptions):
            continue
        name = found.group(1)
        depth = line.find(name)
        while parents and parents[-1][0] >= depth:
            parents.pop()
        if parents:
            drawn[name] = parents[-1][1]
        parents.append((depth, name))
    classes = {name: cls for name, cls in vars(exceptions).items()
               if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == exceptions.__name__}
    assert set(drawn) == set(classes) - {"AioCeleryError"}
    for name, parent in drawn.items():
        own = [b.__name__ for b in classes[name].__bases__ if issubclass(b, aiocelery.AioCeleryError)]
        assert own == [parent], name
    assert set(classes) <= set(aiocelery.__all__)
