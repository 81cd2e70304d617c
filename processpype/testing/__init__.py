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

from processpype._lazy import attach_stub

# The exported names are listed once, in __init__.pyi (read on first lookup).
__getattr__, __dir__ = attach_stub(__name__, __file__, globals())
