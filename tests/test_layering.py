"""The layering of docs/architecture.md holds: no module imports from a layer above its own, and
``_redis/`` (a pure client) imports nothing of aiocelery outside itself.

The layers are read from the document's block of ``layer N  title: names`` lines, so the document
and the code cannot drift apart. Imports under ``if TYPE_CHECKING:`` only name types and are
exempt; every other import counts, module-level or inside a function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "aiocelery"
ALLOWED_UPWARD = {
    ("aiocelery.app", "aiocelery.worker.worker"): "App.worker() builds the worker runtime, imported when called",
    ("aiocelery.app", "aiocelery.worker.recycle"): "App.worker() builds the worker runtime, imported when called",
}
"""(importer, imported) pairs the architecture document names as the exception to the rule."""


def layers() -> dict[str, int]:
    """Module or package name (dotted, under aiocelery) -> layer, from docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    found: dict[str, int] = {}
    for number, names in re.findall(r"^layer (\d+)\s+[^:\n]+:\s*(.+)$", text, re.M):
        for name in names.split():
            dotted = name.rstrip("/").replace("/", ".")
            found["aiocelery" if dotted == "__init__" else f"aiocelery.{dotted}"] = int(number)
    return found


def layer_of(module: str, table: dict[str, int]) -> int:
    """The layer of the longest table entry that is ``module`` or a package containing it."""
    if module == "aiocelery":
        return table["aiocelery"]
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        prefix = ".".join(parts[:end])
        if prefix in table:
            return table[prefix]
    raise AssertionError(f"{module} is in no layer of docs/architecture.md: add it there")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_imports(path: Path) -> list[tuple[str, int]]:
    """(imported aiocelery module, line) for each import not under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text("utf-8"))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for child in node.body for n in ast.walk(child))
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "aiocelery" else [f"aiocelery.{a.name}" for a in node.names]
            out += [(n, node.lineno) for n in names if n.startswith("aiocelery")]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("aiocelery")]
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    table = layers()
    assert len(set(table.values())) >= 5, "docs/architecture.md has lost its layer block"
    for path in MODULES:
        layer_of(module_name(path), table)


def test_no_relative_imports() -> None:
    """Absolute imports name the layer they reach into, so this test and a reader both see it."""
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.relative_to(ROOT)}:{node.lineno} uses a relative import"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_only(path: Path) -> None:
    table = layers()
    me = module_name(path)
    mine = layer_of(me, table)
    for imported, line in runtime_imports(path):
        if (me, imported) in ALLOWED_UPWARD:
            continue
        theirs = layer_of(imported, table)
        assert theirs <= mine, (f"{me} (layer {mine}) imports {imported} (layer {theirs}) at line {line}: "
                                "a lower layer takes a callable or a protocol instead")


def test_the_redis_client_knows_nothing_of_tasks() -> None:
    for path in sorted((PACKAGE / "_redis").rglob("*.py")):
        for imported, line in runtime_imports(path):
            assert imported.startswith("aiocelery._redis"), f"{path.name}:{line} imports {imported}"
        text = path.read_text("utf-8")
        for words in ("brokers?", "workers?", "task ids?", "dead letters?", "consumer groups?"):
            assert not re.search(rf"\b{words}\b", text, re.I), f"{path.name} speaks of {words}"


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The parser sees a function-level import and skips a TYPE_CHECKING one."""
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from aiocelery.app import App\n"
                      "def f():\n    from aiocelery.worker.worker import Worker\n")
    assert runtime_imports(sample) == [("aiocelery.worker.worker", 5)]
