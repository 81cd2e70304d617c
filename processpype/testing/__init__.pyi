# The names of ``processpype.testing``, each listed once: type checkers read them here,
# and ``processpype._lazy.attach_stub`` reads them at run time.

from processpype.testing.recording import RecordingCommunicator as RecordingCommunicator
from processpype.testing.redis import RedisTestServer as RedisTestServer
from processpype.testing.smtp import SMTPTestServer as SMTPTestServer
from processpype.testing.telegram import FakeTelegramClient as FakeTelegramClient
from processpype.testing.webhooks import WebhookCapture as WebhookCapture
