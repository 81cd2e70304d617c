"""Every error a user of processpype can catch (the documented path).

They live on the bottom floor, in ``processpype.foundation.errors``, whose docstring
draws the tree; this module re-exports them.
"""

from processpype.foundation.errors import (
    BackendStartError,
    BackendUnavailableError,
    CommunicatorError,
    ConfigError,
    DeliveryError,
    DeliveryTimeoutError,
    NotifierClosedError,
    OutboxUnavailableError,
    ProcesspypeError,
    QueueFullError,
    SendError,
    describe_error,
)

__all__ = [
    "BackendStartError",
    "BackendUnavailableError",
    "CommunicatorError",
    "ConfigError",
    "DeliveryError",
    "DeliveryTimeoutError",
    "NotifierClosedError",
    "OutboxUnavailableError",
    "ProcesspypeError",
    "QueueFullError",
    "SendError",
    "describe_error",
]
