"""pytest plugin (entry point ``processpype``): fixtures for code that sends notifications.

Fixtures, all function-scoped and synchronous (so they work in sync tests and in async
tests under pytest-asyncio's strict and auto modes alike):

- ``processpype_recorder``: a fresh ``RecordingCommunicator``.
- ``processpype_smtp_server``: a started ``SMTPTestServer``, stopped after the test.
- ``processpype_smtp_server_factory``: ``factory(**options) -> SMTPTestServer`` for TLS or
  AUTH variants; every server it started is stopped after the test.
- ``processpype_telegram``: a ``FakeTelegramClient`` that every ``TelegramCommunicator``
  created during the test uses (``Notifier.from_yaml`` included).
- ``processpype_notifier``: ``factory(config_or_yaml_path, **kwargs) -> Notifier``; every
  notifier it made is closed after the test.
- ``processpype_webhooks``: a started ``WebhookCapture`` that answers every request httpx
  makes, stopped after the test.
- ``processpype_redis``: a started ``RedisTestServer`` (a real ``redis-server`` on a free
  loopback port, persistence off), stopped after the test; the test is skipped, with
  the reason, where ``redis-server`` cannot be found.

At teardown the notifiers are closed first, before any server or capture goes away, so
messages still queued at the end of a test reach the test doubles and never the network.

Optional packages (aiosmtpd, telethon, respx, ...) are imported inside the fixtures only,
so pytest keeps working for projects that install processpype without the ``testing``
extra; a fixture whose package is missing fails with the ``pip install`` line to run.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from types import ModuleType

    from processpype.communications.notifier import Notifier
    from processpype.config.models import CommunicationsConfig
    from processpype.testing.recording import RecordingCommunicator
    from processpype.testing.redis import RedisTestServer
    from processpype.testing.smtp import SMTPTestServer
    from processpype.testing.telegram import FakeTelegramClient
    from processpype.testing.webhooks import WebhookCapture

__all__ = [
    "NotifierFactory",
    "SMTPServerFactory",
    "processpype_notifier",
    "processpype_recorder",
    "processpype_redis",
    "processpype_smtp_server",
    "processpype_smtp_server_factory",
    "processpype_telegram",
    "processpype_webhooks",
]

_INSTALL_HINT = "pip install 'processpype[testing]'"
_YAML_SUFFIXES = (".yaml", ".yml")
_SMTP_FIXTURES = "the processpype_smtp_server and processpype_smtp_server_factory fixtures"
_TELEGRAM_FIXTURE = "the processpype_telegram fixture and FakeTelegramClient"
_WEBHOOKS_FIXTURE = "the processpype_webhooks fixture and WebhookCapture"


class SMTPServerFactory(Protocol):
    """What ``processpype_smtp_server_factory`` returns: options in, started server out."""

    def __call__(self, **options: Any) -> SMTPTestServer:
        """Start an ``SMTPTestServer`` with ``options`` (``tls=``, ``auth=``, ...)."""
        ...


class NotifierFactory(Protocol):
    """What ``processpype_notifier`` returns: a config or YAML path in, Notifier out."""

    def __call__(
        self,
        config_or_yaml_path: CommunicationsConfig | Mapping[str, Any] | str | os.PathLike[str],
        **kwargs: Any,
    ) -> Notifier:
        """Build a Notifier from a config (mapping or model) or the path of a YAML file."""
        ...


def _import_for(fixtures: str, module: str) -> ModuleType:
    """Import ``module`` for ``fixtures``, failing the test with the install line if absent."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        if missing.split(".")[0] == "processpype":
            raise
    # Outside the except block: the report shows the install line, not an import traceback.
    pytest.fail(
        f"{fixtures} need the {missing!r} package, which is not installed: {_INSTALL_HINT}",
        pytrace=False,
    )


class _NotifierRegistry:
    """The notifiers one test made; closed once, before servers and captures stop."""

    def __init__(self) -> None:
        self.notifiers: list[Notifier] = []

    def close_all(self) -> None:
        """Close every notifier (newest first); re-raise the first error after trying all."""
        _close_each(notifier.close for notifier in _popped(self.notifiers))

    def serve[T](self, double: T, cleanup: Callable[[], object]) -> Iterator[T]:
        """A fixture's body: yield ``double``; then close the notifiers, then ``cleanup()``.

        Notifiers first, while the double still answers: messages still queued at the
        end of a test reach it, never the network.
        """
        try:
            yield double
        finally:
            try:
                self.close_all()
            finally:
                cleanup()


def _close_each(closers: Iterable[Callable[[], object]]) -> None:
    """Call each ``close``; re-raise the first error after trying all."""
    errors: list[BaseException] = []
    for close in closers:
        try:
            close()
        except Exception as exc:  # close the others before reporting
            errors.append(exc)
    if errors:
        raise errors[0]


def _popped[T](items: list[T]) -> Iterator[T]:
    """Take the items of ``items`` newest first, until it is empty."""
    while items:
        yield items.pop()


@pytest.fixture
def _processpype_notifier_registry() -> Iterator[_NotifierRegistry]:
    """Internal: the notifiers made by ``processpype_notifier`` in this test."""
    registry = _NotifierRegistry()
    yield registry
    registry.close_all()


@pytest.fixture
def processpype_recorder() -> RecordingCommunicator:
    """A fresh ``RecordingCommunicator`` named ``recorder`` (add it to a Notifier)."""
    from processpype.testing.recording import RecordingCommunicator

    return RecordingCommunicator("recorder")


@pytest.fixture
def processpype_smtp_server_factory(
    _processpype_notifier_registry: _NotifierRegistry,
) -> Iterator[SMTPServerFactory]:
    """``factory(**options) -> SMTPTestServer`` (started); all are stopped after the test.

    Options are those of ``SMTPTestServer``: ``tls="starttls"`` or ``"implicit"``,
    ``auth=(user, password)``, ``host``, ``port``.
    """
    smtp = _import_for(_SMTP_FIXTURES, "processpype.testing.smtp")
    servers: list[SMTPTestServer] = []

    def start_server(**options: Any) -> SMTPTestServer:
        server: SMTPTestServer = smtp.SMTPTestServer(**options)
        try:
            server.start()
        except BaseException:
            server.close()  # removes the certificates of a TLS server
            raise
        servers.append(server)
        return server

    yield from _processpype_notifier_registry.serve(start_server, lambda: _stop_all(servers))


def _stop_all(servers: list[SMTPTestServer]) -> None:
    """Stop every server (newest first), then report the first error any of them met."""
    _close_each(server.close for server in reversed(servers))
    # As pytest-httpserver does: an exception inside the server thread fails the test.
    for server in servers:
        server.raise_errors()


@pytest.fixture
def processpype_smtp_server(
    processpype_smtp_server_factory: SMTPServerFactory,
) -> SMTPTestServer:
    """A started plain-text ``SMTPTestServer`` on 127.0.0.1, stopped after the test."""
    return processpype_smtp_server_factory()


@pytest.fixture
def processpype_telegram(
    _processpype_notifier_registry: _NotifierRegistry,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FakeTelegramClient]:
    """A ``FakeTelegramClient`` that every ``TelegramCommunicator`` made in the test uses.

    Sessions a backend keeps (logins, file sessions) go to a temporary folder, never
    into the user's data directory.
    """
    fake_module = _import_for(_TELEGRAM_FIXTURE, "processpype.testing.telegram")
    backend = _import_for(_TELEGRAM_FIXTURE, "processpype.communications.backends.telegram")
    fake: FakeTelegramClient = fake_module.FakeTelegramClient()
    sessions = tmp_path_factory.mktemp("processpype-telegram")
    monkeypatch.setattr(backend, "default_session_dir", lambda: sessions)
    previous = backend.set_default_client_factory(fake.as_client_factory())
    yield from _processpype_notifier_registry.serve(
        fake, lambda: backend.set_default_client_factory(previous)
    )


@pytest.fixture
def processpype_webhooks(
    _processpype_notifier_registry: _NotifierRegistry,
) -> Iterator[WebhookCapture]:
    """A started ``WebhookCapture``: httpx requests are captured and answered 200."""
    webhooks = _import_for(_WEBHOOKS_FIXTURE, "processpype.testing.webhooks")
    capture: WebhookCapture = webhooks.WebhookCapture()
    capture.start()
    yield from _processpype_notifier_registry.serve(capture, capture.stop)


@pytest.fixture
def processpype_notifier(
    _processpype_notifier_registry: _NotifierRegistry,
) -> NotifierFactory:
    """``factory(config_or_yaml_path, **kwargs) -> Notifier``; all are closed after the test.

    A path (``os.PathLike``, or a string ending in ``.yaml``/``.yml``) is loaded with
    ``Notifier.from_yaml(path, **kwargs)`` (``env=`` included); a mapping or a
    ``CommunicationsConfig`` builds ``Notifier(config, **kwargs)``.
    """
    from processpype.communications.notifier import Notifier

    def make_notifier(
        config_or_yaml_path: CommunicationsConfig | Mapping[str, Any] | str | os.PathLike[str],
        **kwargs: Any,
    ) -> Notifier:
        source = config_or_yaml_path
        if isinstance(source, os.PathLike) or (
            isinstance(source, str) and source.lower().endswith(_YAML_SUFFIXES)
        ):
            notifier = Notifier.from_yaml(source, **kwargs)
        elif isinstance(source, str):
            raise ValueError(
                f"processpype_notifier: {source!r} is neither a config mapping nor the path "
                "of a .yaml/.yml file (pass a pathlib.Path for another file name)"
            )
        else:
            notifier = Notifier(source, **kwargs)
        _processpype_notifier_registry.notifiers.append(notifier)
        return notifier

    return make_notifier


@pytest.fixture
def processpype_redis(
    _processpype_notifier_registry: _NotifierRegistry,
) -> Iterator[RedisTestServer]:
    """A started ``RedisTestServer`` on 127.0.0.1, stopped after the test.

    Skips the test, saying why, where the ``redis-server`` program cannot be found.
    """
    from processpype.testing.redis import RedisTestServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisTestServer().start()
    yield from _processpype_notifier_registry.serve(server, server.stop)
