"""Test doubles and a pytest plugin for code that sends notifications with processpype.

- ``RecordingCommunicator``: an in-memory backend (type ``recording``) that keeps every
  message it is given.
- ``SMTPTestServer``: a real SMTP server (aiosmtpd) on 127.0.0.1, with TLS, AUTH and
  faults on demand.
- ``FakeTelegramClient``: stands in for telethon's ``TelegramClient`` and raises
  telethon's own errors.
- ``WebhookCapture``: captures what webhook backends post (respx).
- ``RedisTestServer``: a real ``redis-server`` on a free loopback port, persistence off.

Install with ``pip install 'processpype[testing]'``. The pytest plugin (fixtures
prefixed ``processpype_``) is registered automatically. Names load on first use, so
importing this package needs none of the optional packages.
"""

from __future__ import annotations

from processpype._lazy import lazy_exports

# Not `from typing import TYPE_CHECKING`: importing typing would double this import's cost.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from processpype.testing.recording import RecordingCommunicator
    from processpype.testing.redis import RedisTestServer
    from processpype.testing.smtp import SMTPTestServer
    from processpype.testing.telegram import FakeTelegramClient
    from processpype.testing.webhooks import WebhookCapture

__all__ = [
    "FakeTelegramClient",
    "RecordingCommunicator",
    "RedisTestServer",
    "SMTPTestServer",
    "WebhookCapture",
]

_LOCATIONS = {
    "FakeTelegramClient": "processpype.testing.telegram",
    "RecordingCommunicator": "processpype.testing.recording",
    "RedisTestServer": "processpype.testing.redis",
    "SMTPTestServer": "processpype.testing.smtp",
    "WebhookCapture": "processpype.testing.webhooks",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LOCATIONS)
