"""The floors run down: no package imports one above its own at run time.

Bottom to top: ``processpype.foundation`` (errors, message models, masking), then
``processpype.config``, then ``processpype.communications``, then the CLI and
``processpype.testing``. The root face ``processpype/__init__.py`` belongs to no floor:
it names what every floor exports and imports each name only when it is first used.
Imports under ``if TYPE_CHECKING:`` are for the type checker and do not count.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import processpype

PACKAGE = Path(processpype.__file__).parent

FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("processpype.foundation", "processpype._lazy")),
    ("config", ("processpype.config",)),
    ("communications", ("processpype.communications",)),
    ("top", ("processpype.cli", "processpype._cli", "processpype.__main__", "processpype.testing")),
)
"""Each floor and the module prefixes it holds, bottom first."""


def floor_of(module: str) -> int | None:
    """The index of the floor ``module`` belongs to; None for the root face and non-processpype."""
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if module == prefix or module.startswith(f"{prefix}."):
                return index
            if prefix == "processpype._cli" and module.startswith(prefix):
                return index  # the CLI's private modules (_cli_run, _cli_outbox, ...)
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = sorted(_module_name(path) for path in PACKAGE.rglob("*.py"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_time_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, module)`` of every import outside ``if TYPE_CHECKING:`` blocks."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from processpype.config import models`` imports processpype.config.models
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_every_module_belongs_to_a_floor() -> None:
    homeless = [name for name in MODULES if name != "processpype" and floor_of(name) is None]
    assert homeless == [], "add these modules to a floor in FLOORS"


def test_no_module_imports_a_floor_above_its_own() -> None:
    upward: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        own = floor_of(module)
        if own is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, target in _run_time_imports(tree):
            floor = floor_of(target)
            if floor is not None and floor > own:
                upward.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line} ({FLOORS[own][0]}) imports "
                    f"{target} ({FLOORS[floor][0]})"
                )
    assert upward == []


def test_the_relative_imports_that_the_ast_check_cannot_place_are_none() -> None:
    relative = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative == []


@pytest.mark.parametrize(
    "floor", list(range(len(FLOORS) - 1)), ids=[name for name, _ in FLOORS[:-1]]
)
def test_importing_a_floor_loads_nothing_above_it(floor: int) -> None:
    modules = [name for name in MODULES if floor_of(name) == floor]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('processpype'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    above = [name for name in loaded if (floor_of(name) or 0) > floor]
    assert modules, "the floor holds modules"
    assert above == []
