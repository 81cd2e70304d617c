"""A missing optional package, as the error a backend raises when it is imported.

Each backend module imports its package (telethon, aiosmtplib, httpx) first, inside
``try``; ``unavailable`` turns the failure into ``BackendUnavailableError``, which names
the backend type, the package and the extra to install.
"""

from __future__ import annotations

from processpype.foundation.errors import BackendUnavailableError

__all__ = ["unavailable"]


def unavailable(
    exc: ModuleNotFoundError, backend_type: str, package: str, extra: str
) -> ImportError:
    """``BackendUnavailableError`` when ``exc`` says ``package`` is missing; else ``exc``
    itself (another module is missing: a broken install, not a missing extra)."""
    if exc.name is None or exc.name.split(".")[0] != package:
        return exc
    return BackendUnavailableError(backend_type, package, extra)
