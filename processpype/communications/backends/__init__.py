"""Backend factory and registry.

``create_communicator`` looks a backend type up in this order: factories registered with
``register_backend``, then third-party factories published under the entry-point group
``processpype.communicators`` (name = type, value = factory), then the built-in types.
A type whose package is missing, or that nobody provides, yields a ``NoOpCommunicator``
with a warning that says what to install. Backend modules are imported only when a
backend of their type is created, so ``import processpype`` stays light.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from processpype.communications.base import Communicator, NoOpCommunicator
from processpype.config.models import BUILTIN_BACKEND_TYPES, CommunicatorBackendConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendFactory",
    "available_backends",
    "backend_unavailable_reason",
    "create_communicator",
    "register_backend",
    "unregister_backend",
]

logger = logging.getLogger("processpype.communications.backends")

ENTRY_POINT_GROUP = "processpype.communicators"

BackendFactory = Callable[..., Communicator]
"""A callable ``(name, config) -> Communicator``."""


@dataclass(frozen=True)
class _Builtin:
    module: str
    attribute: str
    package: str | None  # import name of the optional dependency, None for none
    distribution: str
    extra: str


_BUILTINS: dict[str, _Builtin] = {
    "telegram": _Builtin("telegram", "TelegramCommunicator", "telethon", "telethon", "telegram"),
    "email": _Builtin("email", "EmailCommunicator", "aiosmtplib", "aiosmtplib", "email"),
    "console": _Builtin("console", "ConsoleCommunicator", None, "", ""),
    "webhook": _Builtin("webhook", "WebhookCommunicator", "httpx", "httpx", "webhook"),
    "slack": _Builtin("webhook", "SlackCommunicator", "httpx", "httpx", "webhook"),
    "discord": _Builtin("webhook", "DiscordCommunicator", "httpx", "httpx", "webhook"),
}

_registry: dict[str, BackendFactory] = {}
_entry_points: dict[str, Any] | None = None
_lock = threading.Lock()


def register_backend(type_name: str, factory: BackendFactory, *, replace: bool = False) -> None:
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


def _qualified(factory: BackendFactory) -> tuple[object, ...]:
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


def _entry_point_factories() -> dict[str, Any]:
    global _entry_points
    with _lock:
        if _entry_points is None:
            _entry_points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        return _entry_points


def backend_unavailable_reason(type_name: str) -> str | None:
    """Why backends of ``type_name`` cannot be created here, or None when they can."""
    if type_name in _registry or type_name in _entry_point_factories():
        return None
    builtin = _BUILTINS.get(type_name)
    if builtin is None:
        known = sorted({*_BUILTINS, *_registry, *_entry_point_factories()})
        return (
            f"unknown backend type {type_name!r} (known: {', '.join(known)}; register "
            f"others with register_backend or the {ENTRY_POINT_GROUP!r} entry-point group)"
        )
    if builtin.package and importlib.util.find_spec(builtin.package) is None:
        return _missing_package(type_name, builtin)
    return None


def _missing_package(type_name: str, builtin: _Builtin) -> str:
    return (
        f"backend type {type_name!r} needs the {builtin.distribution!r} package, which is not "
        f"installed: pip install 'processpype[{builtin.extra}]'"
    )


def available_backends() -> dict[str, str | None]:
    """Every known backend type and why it is unavailable (None: available)."""
    names = sorted({*_BUILTINS, *_registry, *_entry_point_factories()})
    return {name: backend_unavailable_reason(name) for name in names}


def _noop(name: str, config: CommunicatorBackendConfig, reason: str) -> NoOpCommunicator:
    logger.warning("backend %r falls back to a no-op: %s", name, reason)
    return NoOpCommunicator(name, config, reason=reason)


def create_communicator(name: str, config: CommunicatorBackendConfig) -> Communicator:
    """Create a Communicator for ``config.type``; a NoOpCommunicator when unavailable."""
    type_name = config.type
    factory = _registry.get(type_name)
    if factory is not None:
        return factory(name, config)

    entry_point = _entry_point_factories().get(type_name)
    if entry_point is not None:
        try:
            loaded = entry_point.load()
        except Exception as exc:  # a broken plugin must not break the application
            reason = f"entry point {entry_point.value!r} for type {type_name!r} failed: {exc}"
            return _noop(name, config, reason)
        return loaded(name, config)  # type: ignore[no-any-return]

    builtin = _BUILTINS.get(type_name)
    if builtin is None:
        reason = backend_unavailable_reason(type_name) or f"unknown backend type {type_name!r}"
        return _noop(name, config, reason)

    model = BUILTIN_BACKEND_TYPES[type_name]
    if not isinstance(config, model):
        # A base config naming a built-in type (built by hand): validate it fully.
        config = model.model_validate(config.model_dump())
    if builtin.package and importlib.util.find_spec(builtin.package) is None:
        return _noop(name, config, _missing_package(type_name, builtin))
    try:
        module = importlib.import_module(f"processpype.communications.backends.{builtin.module}")
    except ImportError as exc:
        if builtin.package and exc.name and exc.name.split(".")[0] == builtin.package:
            return _noop(name, config, _missing_package(type_name, builtin))
        raise
    communicator_class: BackendFactory = getattr(module, builtin.attribute)
    return communicator_class(name, config)
