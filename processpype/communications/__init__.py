"""The communications subsystem: messages, backends, label routing, and the Notifier.

Names are imported on first use, so ``import processpype.communications`` stays fast and
needs none of the optional backend packages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processpype.communications.backends import create_communicator, register_backend
    from processpype.communications.base import Communicator, NoOpCommunicator
    from processpype.communications.delivery import DeliveryReport, DeliveryResult
    from processpype.communications.dispatcher import (
        CommunicationDispatcher,
        emit_message,
        get_dispatcher,
    )
    from processpype.communications.errors import (
        ConfigError,
        DeliveryError,
        ProcesspypeError,
        SendError,
    )
    from processpype.communications.models import (
        IncomingMessage,
        MessageHandler,
        MessageSeverity,
        OutgoingMessage,
    )
    from processpype.communications.notifier import Notifier
    from processpype.communications.setup import init_communications, shutdown_communications

__all__ = [
    "CommunicationDispatcher",
    "Communicator",
    "ConfigError",
    "DeliveryError",
    "DeliveryReport",
    "DeliveryResult",
    "IncomingMessage",
    "MessageHandler",
    "MessageSeverity",
    "NoOpCommunicator",
    "Notifier",
    "OutgoingMessage",
    "ProcesspypeError",
    "SendError",
    "create_communicator",
    "emit_message",
    "get_dispatcher",
    "init_communications",
    "register_backend",
    "shutdown_communications",
]

_LOCATIONS = {
    "CommunicationDispatcher": "dispatcher",
    "Communicator": "base",
    "ConfigError": "errors",
    "DeliveryError": "errors",
    "DeliveryReport": "delivery",
    "DeliveryResult": "delivery",
    "IncomingMessage": "models",
    "MessageHandler": "models",
    "MessageSeverity": "models",
    "NoOpCommunicator": "base",
    "Notifier": "notifier",
    "OutgoingMessage": "models",
    "ProcesspypeError": "errors",
    "SendError": "errors",
    "create_communicator": "backends",
    "emit_message": "dispatcher",
    "get_dispatcher": "dispatcher",
    "init_communications": "setup",
    "register_backend": "backends",
    "shutdown_communications": "setup",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
