"""Every error a user of processpype can catch, in one place.

The tree::

    ProcesspypeError
    ├── ConfigError (also ValueError)           bad configuration: names the file, key, value
    ├── BackendUnavailableError (also ImportError)  a backend's package is not installed
    ├── CommunicatorError                       a backend could not do its work
    │   ├── BackendStartError (also ConnectionError)  start() failed (connect, login, TLS)
    │   └── SendError                           a message did not go out through a backend
    │       └── QueueFullError                  a queueing backend stayed full past its timeout
    ├── OutboxUnavailableError (also ConnectionError)  the Redis outbox cannot be reached
    ├── DeliveryError                           a DeliveryReport holds failed results
    ├── DeliveryTimeoutError (also TimeoutError)  a blocking send ran out of time
    └── NotifierClosedError (also RuntimeError)   the Notifier was used after close()

Lower-level errors (aiosmtplib, telethon, httpx) are translated at the backend boundary
with ``raise ... from exc``, so the original stays reachable as ``__cause__``. No error
message ever contains the value of a secret (token, api_hash, session_string, password,
webhook URL path).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from processpype.foundation._masking import redact

if TYPE_CHECKING:
    from processpype.communications.delivery import DeliveryReport

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


class ProcesspypeError(Exception):
    """Base class of every error raised by processpype."""


class ConfigError(ProcesspypeError, ValueError):
    """A configuration is invalid; the message names the file, the key path and the value."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        prefix = ""
        if source:
            prefix += f"{source}: "
        if key:
            prefix += f"{key}: "
        super().__init__(prefix + message)
        self.source = source
        self.key = key
        self.problem = message
        """The message without the file and key prefix."""

    def with_source(self, source: str) -> ConfigError:
        """This error naming ``source`` (the config file), unless it names one already."""
        if self.source:
            return self
        error = ConfigError(self.problem, source=source, key=self.key)
        error.__cause__ = self.__cause__
        return error


class BackendUnavailableError(ProcesspypeError, ImportError):
    """A backend type needs a package that is not installed."""

    def __init__(self, backend_type: str, package: str, extra: str) -> None:
        super().__init__(
            f"backend type {backend_type!r} needs the {package!r} package: "
            f"pip install 'processpype[{extra}]'"
        )
        self.backend_type = backend_type
        self.package = package
        self.extra = extra


class CommunicatorError(ProcesspypeError):
    """A backend could not do its work; ``backend`` names the communicator."""

    def __init__(self, message: str, *, backend: str = "") -> None:
        # A lower library's text (a server's reply, a URL) may quote a secret.
        super().__init__(redact(message))
        self.backend = backend


class BackendStartError(CommunicatorError, ConnectionError):
    """A backend failed to start (connect, authenticate, negotiate TLS, log in)."""


class SendError(CommunicatorError):
    """A message did not go out through a backend.

    ``attempts`` is how many times it was tried; ``permanent`` is True when retrying
    cannot help (a 5xx reply, a refused recipient, a rejected request).
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str = "",
        attempts: int = 1,
        permanent: bool = False,
    ) -> None:
        super().__init__(message, backend=backend)
        self.attempts = attempts
        self.permanent = permanent


class QueueFullError(SendError):
    """A queueing backend's queue stayed full for longer than the send timeout."""


class OutboxUnavailableError(ProcesspypeError, ConnectionError):
    """The Redis outbox could not be reached; ``url`` is its URL with the password masked."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class DeliveryError(ProcesspypeError):
    """Raised by ``DeliveryReport.raise_for_errors()``; ``report`` holds every result."""

    def __init__(self, message: str, *, report: DeliveryReport) -> None:
        super().__init__(message)
        self.report = report


class DeliveryTimeoutError(ProcesspypeError, TimeoutError):
    """A blocking send did not finish in time; the message stays queued.

    ``pending`` names the backends that had not reached an outcome.
    """

    def __init__(self, message: str, *, pending: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.pending = tuple(pending)


class NotifierClosedError(ProcesspypeError, RuntimeError):
    """The Notifier was used after ``close()``."""


def describe_error(exc: BaseException) -> str:
    """``"TypeName: message"`` (or just the type name), secrets masked, for logs and results."""
    text = redact(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
