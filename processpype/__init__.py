"""processpype: send notifications to Telegram, email and webhooks, routed by label.

Quick start::

    from processpype import Notifier

    with Notifier.from_yaml("notify.yaml") as notifier:
        notifier.send("Backup done", label="ops").raise_for_errors()

Names are imported on first use, so ``import processpype`` costs almost nothing.
"""

from __future__ import annotations

from processpype._lazy import lazy_exports

# Not `from typing import TYPE_CHECKING`: importing typing would double this import's cost.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from processpype.communications.delivery import DeliveryReport, DeliveryResult
    from processpype.communications.errors import (
        ConfigError,
        DeliveryError,
        ProcesspypeError,
    )
    from processpype.communications.models import (
        Attachment,
        IncomingMessage,
        MessageSeverity,
        OutgoingMessage,
    )
    from processpype.communications.notifier import Notifier
    from processpype.config.loader import load_config
    from processpype.config.models import CommunicationsConfig

__version__ = "0.1.0"

__all__ = [
    "Attachment",
    "CommunicationsConfig",
    "ConfigError",
    "DeliveryError",
    "DeliveryReport",
    "DeliveryResult",
    "IncomingMessage",
    "MessageSeverity",
    "Notifier",
    "OutgoingMessage",
    "ProcesspypeError",
    "__version__",
    "load_config",
]

_LOCATIONS = {
    "Attachment": "processpype.communications.models",
    "CommunicationsConfig": "processpype.config.models",
    "ConfigError": "processpype.communications.errors",
    "DeliveryError": "processpype.communications.errors",
    "DeliveryReport": "processpype.communications.delivery",
    "DeliveryResult": "processpype.communications.delivery",
    "IncomingMessage": "processpype.communications.models",
    "MessageSeverity": "processpype.communications.models",
    "Notifier": "processpype.communications.notifier",
    "OutgoingMessage": "processpype.communications.models",
    "ProcesspypeError": "processpype.communications.errors",
    "load_config": "processpype.config.loader",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LOCATIONS)
