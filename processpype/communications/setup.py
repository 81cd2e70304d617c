"""Start and stop the process-wide communications subsystem from configuration."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from processpype.communications.backends import BackendFactory, create_communicator
from processpype.communications.dispatcher import CommunicationDispatcher, get_dispatcher
from processpype.config.models import CommunicationsConfig

__all__ = ["init_communications", "register_backends", "shutdown_communications"]

logger = logging.getLogger("processpype.communications.setup")


def register_backends(
    config: CommunicationsConfig,
    dispatcher: CommunicationDispatcher,
    *,
    factory: BackendFactory = create_communicator,
) -> None:
    """Create a communicator for every enabled backend and register it for its labels."""
    for name, backend in config.backends.items():
        if not backend.enabled:
            logger.debug("backend %r is disabled (enabled: false)", name)
            continue
        dispatcher.register(factory(name, backend), list(backend.labels))


async def init_communications(config: CommunicationsConfig) -> None:
    """Create, register and start every enabled backend on the global dispatcher.

    Does nothing if ``config.enabled`` is False.
    """
    if not config.enabled:
        logger.info("communications are disabled (communications.enabled is false)")
        return
    dispatcher = get_dispatcher()
    register_backends(config, dispatcher)
    await dispatcher.start_all()


async def shutdown_communications(timeout: float | None = 10.0) -> bool:
    """Flush (up to ``timeout`` seconds) and stop every backend of the global dispatcher.

    Stopping gets up to ``timeout`` seconds too: a stuck backend is logged, not waited
    for. Every backend is unregistered. Returns True when every queue emptied in time.
    """
    dispatcher = get_dispatcher()
    flushed = False
    with contextlib.suppress(TimeoutError):  # a backend's flush that ignores its timeout
        async with asyncio.timeout(timeout):
            flushed = await dispatcher.flush_all(timeout)
    if not flushed:
        logger.warning("some messages were still queued when communications shut down")
    await dispatcher.stop_all(timeout)
    for name in list(dispatcher.communicators):
        dispatcher.unregister(name)
    return flushed
