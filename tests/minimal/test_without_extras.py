"""With no extra installed: imports work and built-in backends fall back to a named no-op."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from processpype.communications.backends import available_backends, create_communicator
from processpype.communications.base import NoOpCommunicator
from processpype.config.models import CommunicationsConfig

pytestmark = pytest.mark.minimal


@pytest.mark.parametrize("package", ["telethon", "aiosmtplib", "httpx", "aiosmtpd"])
def test_optional_package_is_really_absent(package: str) -> None:
    assert importlib.util.find_spec(package) is None


def test_public_api_imports() -> None:
    import processpype
    from processpype import MessageSeverity, OutgoingMessage
    from processpype.communications import CommunicationDispatcher

    assert processpype.__version__
    assert OutgoingMessage(message="x").severity is MessageSeverity.INFO
    assert CommunicationDispatcher().communicators == {}


@pytest.mark.parametrize(
    ("backend", "package", "extra"),
    [
        (
            {
                "type": "telegram",
                "api_id": 1,
                "api_hash": "h",
                "token": "1:t",
                "chats": {"default": {"chat_id": 1}},
            },
            "telethon",
            "telegram",
        ),
        ({"type": "email", "from_address": "bot@example.com"}, "aiosmtplib", "email"),
        ({"type": "webhook", "url": "https://hooks.invalid/x"}, "httpx", "webhook"),
    ],
)
def test_missing_backend_becomes_a_noop_with_a_helpful_warning(
    backend: dict[str, object], package: str, extra: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = CommunicationsConfig.model_validate({"backends": {"mine": backend}})
    with caplog.at_level(logging.WARNING, logger="processpype"):
        communicator = create_communicator("mine", config.backends["mine"])
    assert isinstance(communicator, NoOpCommunicator)
    assert communicator.name == "mine"
    assert f"'{package}'" in caplog.text
    assert f"pip install 'processpype[{extra}]'" in caplog.text


def test_console_backend_works_without_extras() -> None:
    assert available_backends()["console"] is None
    assert "processpype[email]" in (available_backends()["email"] or "")


def test_an_outbox_without_redis_installed_says_which_extra_to_install() -> None:
    from processpype.communications.errors import BackendUnavailableError
    from processpype.communications.notifier import Notifier

    assert importlib.util.find_spec("redis") is None
    config = {"enabled": True, "outbox": {"url": "redis://localhost:6379/0"}}
    with pytest.raises(BackendUnavailableError, match=r"processpype\[redis\]"):
        Notifier(config, start=False)


@pytest.mark.parametrize(
    ("module", "extra"), [("telegram", "telegram"), ("email", "email"), ("webhook", "webhook")]
)
def test_importing_a_backend_module_without_its_package_raises_backend_unavailable(
    module: str, extra: str
) -> None:
    from processpype.communications.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match=rf"processpype\[{extra}\]"):
        importlib.import_module(f"processpype.communications.backends.{module}")
