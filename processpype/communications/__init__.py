"""The communications subsystem: messages, backends, label routing, and the Notifier.

Names are imported on first use, so ``import processpype.communications`` stays fast and
needs none of the optional backend packages.
"""

from __future__ import annotations

from processpype._lazy import lazy_exports

# Not `from typing import TYPE_CHECKING`: importing typing would double this import's cost.
TYPE_CHECKING = False

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
        Attachment,
        IncomingMessage,
        MessageHandler,
        MessageSeverity,
        OutgoingMessage,
    )
    from processpype.communications.notifier import Notifier
    from processpype.communications.setup import init_communications, shutdown_communications

__all__ = [
    "Attachment",
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
    "Attachment": "processpype.communications.models",
    "CommunicationDispatcher": "processpype.communications.dispatcher",
    "Communicator": "processpype.communications.base",
    "ConfigError": "processpype.communications.errors",
    "DeliveryError": "processpype.communications.errors",
    "DeliveryReport": "processpype.communications.delivery",
    "DeliveryResult": "processpype.communications.delivery",
    "IncomingMessage": "processpype.communications.models",
    "MessageHandler": "processpype.communications.models",
    "MessageSeverity": "processpype.communications.models",
    "NoOpCommunicator": "processpype.communications.base",
    "Notifier": "processpype.communications.notifier",
    "OutgoingMessage": "processpype.communications.models",
    "ProcesspypeError": "processpype.communications.errors",
    "SendError": "processpype.communications.errors",
    "create_communicator": "processpype.communications.backends",
    "emit_message": "processpype.communications.dispatcher",
    "get_dispatcher": "processpype.communications.dispatcher",
    "init_communications": "processpype.communications.setup",
    "register_backend": "processpype.communications.backends",
    "shutdown_communications": "processpype.communications.setup",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LOCATIONS)
