"""Lazy package faces: each exported name is listed once, in the package's ``__init__.pyi``.

The stub is what type checkers read (``from processpype import Notifier`` is typed); at
run time ``attach_stub`` reads the same stub, on the first attribute lookup, to learn
where each name is defined, and imports it from there on first access (PEP 562). This
is scientific-python's SPEC 1 (lazy_loader's ``attach_stub``), written out here so that
``import processpype`` imports nothing but this module.

A stub may hold only re-exports, ``from module import Name as Name`` (the form that
exports a name to type checkers), and annotations of names the package itself defines
(``__version__: str``). ``__all__`` is every name of the stub, sorted.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def attach_stub(
    package: str, init_file: str, namespace: dict[str, object]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Return ``__getattr__`` and ``__dir__`` for ``package`` from its ``__init__.pyi``.

    ``init_file`` is the package's ``__file__``, ``namespace`` its globals: a looked-up
    name is cached there, so later accesses are direct.
    """
    stub = init_file.removesuffix(".py") + ".pyi"
    table: dict[str, str] = {}

    def locations() -> dict[str, str]:
        if not table:
            table.update(_read_stub(stub))
            namespace["__all__"] = sorted(table)
        return table

    def __getattr__(name: str) -> object:
        if name == "__all__":
            locations()
            return namespace["__all__"]
        module = locations().get(name)
        if not module:  # unknown, or one of the package's own names that it never set
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *locations(), "__all__"})

    return __getattr__, __dir__


def _read_stub(path: str) -> dict[str, str]:
    """Map each name of the stub at ``path`` to its module ("" for the package's own)."""
    import ast  # on first lookup only: it costs more than the rest of the import

    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise ImportError(
            f"{path} is missing: processpype reads its exported names from it; reinstall "
            "processpype (a bundler must include its *.pyi files)"
        ) from None
    tree = ast.parse(text, filename=path)
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if alias.asname != alias.name:
                    raise ValueError(f"{path}: write 'import {alias.name} as {alias.name}'")
                names[alias.name] = node.module
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = ""  # defined by the package itself
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            raise ValueError(f"{path}:{node.lineno}: a face stub holds only re-exports")
    return names
