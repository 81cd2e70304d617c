"""processpype: send notifications to Telegram, email and webhooks, routed by label.

Quick start::

    from processpype import Notifier

    with Notifier.from_yaml("notify.yaml") as notifier:
        notifier.send("Backup done", label="ops").raise_for_errors()

Names are imported on first use, so ``import processpype`` costs almost nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processpype.communications.delivery import DeliveryReport, DeliveryResult
    from processpype.communications.errors import (
        ConfigError,
        DeliveryError,
        ProcesspypeError,
    )
    from processpype.communications.models import (
        IncomingMessage,
        MessageSeverity,
        OutgoingMessage,
    )
    from processpype.communications.notifier import Notifier
    from processpype.config.loader import load_config
    from processpype.config.models import CommunicationsConfig

__version__ = "0.1.0"

__all__ = [
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


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
