"""Which backend types this process knows, and why one cannot be built here.

A type is known when a factory was registered for it with ``register_backend``, when a
third-party package publishes it under the entry-point group
``processpype.communicators`` (name = type, value = factory), or when it is one of the
built-in types of ``processpype.config.models.BUILTIN_BACKENDS``. The registry sits on
the config floor because validating a config asks it whether a type that looks like a
typo of a built-in type is a plugin; the factory that builds communicators from it is
``processpype.communications.backends.create_communicator``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from processpype.config.models import BUILTIN_BACKENDS, BuiltinBackendType

if TYPE_CHECKING:
    from processpype.communications.base import Communicator

__all__ = [
    "ENTRY_POINT_GROUP",
    "available_backends",
    "backend_unavailable_reason",
    "entry_point_for",
    "missing_package_reason",
    "register_backend",
    "registered_factory",
    "unregister_backend",
]

ENTRY_POINT_GROUP = "processpype.communicators"

_registry: dict[str, Callable[..., Communicator]] = {}
_entry_points: dict[str, EntryPoint] | None = None
_lock = threading.Lock()


def register_backend(
    type_name: str, factory: Callable[..., Communicator], *, replace: bool = False
) -> None:
    """Register a factory ``(name, config) -> Communicator`` for backend ``type_name``.

    A registered type takes precedence over entry points and built-in types. The same
    factory registered again (the same qualified name, as when a notebook cell that
    defines and registers it runs again) replaces the old one; a different factory under
    a taken name is refused unless ``replace=True``.
    """
    if not type_name or not type_name.strip():
        raise ValueError("a backend type name cannot be empty")
    if not callable(factory):
        raise TypeError(f"the factory for backend type {type_name!r} is not callable")
    with _lock:
        existing = _registry.get(type_name)
        if existing is not None and not replace and _qualified(existing) != _qualified(factory):
            raise ValueError(
                f"backend type {type_name!r} is already registered; pass replace=True to override"
            )
        _registry[type_name] = factory


def _qualified(factory: Callable[..., Any]) -> tuple[object, ...]:
    """What stays the same when the cell defining a factory runs again.

    A class or function: its module and qualified name (a lambda also its code's file
    and line, since every lambda is called ``<lambda>``); anything else: its identity.
    """
    module = getattr(factory, "__module__", None)
    name = getattr(factory, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(name, str):
        return ("object", id(factory))
    code = getattr(factory, "__code__", None)
    if code is not None:
        return (module, name, code.co_filename, code.co_firstlineno)
    return (module, name)


def unregister_backend(type_name: str) -> None:
    """Remove a factory registered with ``register_backend`` (no error if absent)."""
    with _lock:
        _registry.pop(type_name, None)


def registered_factory(type_name: str) -> Callable[..., Communicator] | None:
    """The factory registered for ``type_name``, or None."""
    return _registry.get(type_name)


def _entry_point_factories() -> dict[str, EntryPoint]:
    global _entry_points
    with _lock:
        if _entry_points is None:
            _entry_points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        return _entry_points


def entry_point_for(type_name: str) -> EntryPoint | None:
    """The entry point a third-party package publishes for ``type_name``, or None."""
    return _entry_point_factories().get(type_name)


def _known_types() -> list[str]:
    return sorted({*BUILTIN_BACKENDS, *_registry, *_entry_point_factories()})


def backend_unavailable_reason(type_name: str) -> str | None:
    """Why backends of ``type_name`` cannot be created here, or None when they can."""
    if type_name in _registry or type_name in _entry_point_factories():
        return None
    builtin = BUILTIN_BACKENDS.get(type_name)
    if builtin is None:
        return (
            f"unknown backend type {type_name!r} (known: {', '.join(_known_types())}; "
            f"register others with register_backend or the {ENTRY_POINT_GROUP!r} "
            "entry-point group)"
        )
    if not builtin.is_installed():
        return missing_package_reason(type_name, builtin)
    return None


def missing_package_reason(type_name: str, builtin: BuiltinBackendType) -> str:
    """The reason a built-in type whose package is not installed cannot be built."""
    return (
        f"backend type {type_name!r} needs the {builtin.distribution!r} package, which is not "
        f"installed: pip install 'processpype[{builtin.extra}]'"
    )


def available_backends() -> dict[str, str | None]:
    """Every known backend type and why it is unavailable (None: available)."""
    return {name: backend_unavailable_reason(name) for name in _known_types()}
