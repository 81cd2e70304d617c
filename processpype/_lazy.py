"""Lazy package attributes: names are imported from their module on first access."""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing is not imported at run time: it costs more than this module
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], locations: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``__getattr__`` and ``__dir__`` for ``package`` (PEP 562).

    ``locations`` maps each public name to the module that defines it; a looked-up name
    is cached in ``namespace`` (the package's globals), so later accesses are direct.
    """

    def __getattr__(name: str) -> Any:
        module = locations.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *locations})

    return __getattr__, __dir__
