"""Where a command's config comes from, and its backends on a dispatcher (private).

``resolve_config`` (``-c``, else ``$PROCESSPYPE_CONFIG``, else the embedded default) is
re-exported by ``processpype.cli``. ``register`` builds the backends through
``register_backends``, as the Notifier does, keeping the errors of those that cannot be
built so a command can print them per backend; ``stop`` is the one bounded stop of the
commands, the dispatcher's ``stop_all``.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from processpype.cli._terminal import STOP_TIMEOUT, CLIError, logger
from processpype.foundation.errors import ConfigError, describe_error

if TYPE_CHECKING:
    from processpype.communications.base import Communicator
    from processpype.communications.dispatcher import CommunicationDispatcher
    from processpype.config.models import CommunicationsConfig, CommunicatorBackendConfig

CONFIG_ENV_VAR = "PROCESSPYPE_CONFIG"

DEFAULT_CONFIG: dict[str, Any] = {
    "enabled": True,
    "backends": {"console": {"type": "console", "labels": ["default"]}},
}
"""The config used when neither ``-c`` nor ``$PROCESSPYPE_CONFIG`` names one."""

DEFAULT_SOURCE = "embedded default"


def resolve_config(path: str | None) -> tuple[CommunicationsConfig, str]:
    """Load ``path`` (``-c``), else ``$PROCESSPYPE_CONFIG``, else the embedded default.

    Returns the config and a description of where it came from.
    """
    from processpype.config.loader import config_from_mapping, load_config, load_config_text

    if path is not None:
        if not path.strip():
            raise CLIError("argument -c/--config: the path is empty")
        if path == "-":
            return load_config_text(read_stdin("the config"), source="<stdin>"), "<stdin>"
        return load_config(path), path
    env_path = os.environ.get(CONFIG_ENV_VAR, "").strip()
    if env_path:
        try:
            return load_config(env_path), f"{env_path} (from ${CONFIG_ENV_VAR})"
        except ConfigError as exc:
            raise ConfigError(f"{exc} (the file named by ${CONFIG_ENV_VAR})") from exc
    config = config_from_mapping(DEFAULT_CONFIG, source=DEFAULT_SOURCE)
    return config, DEFAULT_SOURCE


def read_stdin(what: str) -> str:
    """All of stdin as text; a ``CLIError`` naming ``what`` when it is not UTF-8."""
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as exc:
        raise CLIError(f"{what} read from stdin is not valid UTF-8: {exc.reason}") from None


def register(
    config: CommunicationsConfig,
    dispatcher: CommunicationDispatcher,
    *,
    receive: bool = True,
    source: str | None = None,
) -> dict[str, str]:
    """Register every enabled backend of ``config``; return why some could not be built.

    With an outbox in the config they are its stand-ins (messages go to Redis);
    ``receive=False`` keeps those from competing for a bot's update connection. A
    ``ConfigError`` of a backend is raised naming ``source``, the config's file; any
    other error is returned by backend name and that backend is left unregistered.
    """
    from processpype.communications.backends import BackendFactory, create_communicator
    from processpype.communications.base import NoOpCommunicator
    from processpype.communications.setup import register_backends

    build: BackendFactory = create_communicator
    if config.outbox is not None and config.enabled:
        from processpype.communications.outbox.producer import OutboxProducer

        build = OutboxProducer(config.outbox, receive=receive).communicator_factory
    failed: dict[str, str] = {}

    def factory(name: str, backend: CommunicatorBackendConfig) -> Communicator:
        try:
            return build(name, backend)
        except ConfigError as exc:
            if source is None:
                raise
            raise exc.with_source(source) from exc.__cause__
        except Exception as exc:
            failed[name] = f"cannot be created: {describe_error(exc)}"
            # register_backends registers what the factory returns: a stand-in, taken
            # out again below, so the other backends are still built and registered.
            return NoOpCommunicator(name, backend, reason=failed[name])

    register_backends(config, dispatcher, factory=factory)
    for name in failed:
        dispatcher.unregister(name)
    return failed


async def stop(dispatcher: CommunicationDispatcher) -> None:
    """Stop every backend of ``dispatcher``, bounded: a hung stop must not hang the exit."""
    # log=False: one line about a hung stop (the command's, as before), not two.
    if await dispatcher.stop_all(timeout=STOP_TIMEOUT, log=False):
        logger.warning("some backends did not stop within %g s", STOP_TIMEOUT)
