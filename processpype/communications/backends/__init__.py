"""Backend factory and registry.

``create_communicator`` looks a backend type up in this order: factories registered with
``register_backend``, then third-party factories published under the entry-point group
``processpype.communicators`` (name = type, value = factory), then the built-in types
(the table ``processpype.config.models.BUILTIN_BACKENDS``). The registry itself lives
in ``processpype.config.registry``, re-exported here.

A type whose package is missing, or that nobody provides, yields a ``NoOpCommunicator``
with a warning that says what to install. Backend modules are imported only when a
backend of their type is created, so ``import processpype`` stays light.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from processpype.communications.base import Communicator, NoOpCommunicator
from processpype.config.models import BUILTIN_BACKENDS, CommunicatorBackendConfig
from processpype.config.registry import (
    ENTRY_POINT_GROUP,
    available_backends,
    backend_unavailable_reason,
    entry_point_for,
    missing_package_reason,
    register_backend,
    registered_factory,
    unregister_backend,
)

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

BackendFactory = Callable[..., Communicator]
"""A callable ``(name, config) -> Communicator``."""


def _noop(name: str, config: CommunicatorBackendConfig, reason: str) -> NoOpCommunicator:
    logger.warning("backend %r falls back to a no-op: %s", name, reason)
    return NoOpCommunicator(name, config, reason=reason)


def create_communicator(name: str, config: CommunicatorBackendConfig) -> Communicator:
    """Create a Communicator for ``config.type``; a NoOpCommunicator when unavailable."""
    type_name = config.type
    factory = registered_factory(type_name)
    if factory is not None:
        return factory(name, config)

    entry_point = entry_point_for(type_name)
    if entry_point is not None:
        try:
            loaded = entry_point.load()
        except Exception as exc:  # a broken plugin must not break the application
            reason = f"entry point {entry_point.value!r} for type {type_name!r} failed: {exc}"
            return _noop(name, config, reason)
        return loaded(name, config)  # type: ignore[no-any-return]

    builtin = BUILTIN_BACKENDS.get(type_name)
    if builtin is None:
        reason = backend_unavailable_reason(type_name) or f"unknown backend type {type_name!r}"
        return _noop(name, config, reason)

    if not isinstance(config, builtin.config):
        # A base config naming a built-in type (built by hand): validate it fully.
        config = builtin.config.model_validate(config.model_dump())
    if not builtin.is_installed():
        return _noop(name, config, missing_package_reason(type_name, builtin))
    module_name, _, class_name = builtin.communicator.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if builtin.package and exc.name and exc.name.split(".")[0] == builtin.package:
            return _noop(name, config, missing_package_reason(type_name, builtin))
        raise
    communicator_class: BackendFactory = getattr(module, class_name)
    return communicator_class(name, config)
