# The names of ``processpype.communications.outbox``, each listed once: type checkers
# read them here, and ``processpype._lazy.attach_stub`` reads them at run time.

from processpype.communications.outbox.admin import DeadLetter as DeadLetter
from processpype.communications.outbox.admin import OutboxStatus as OutboxStatus
from processpype.communications.outbox.admin import outbox_status as outbox_status
from processpype.communications.outbox.admin import retry_dead_letters as retry_dead_letters
from processpype.communications.outbox.lease import IncomingReader as IncomingReader
from processpype.communications.outbox.lease import UpdateLease as UpdateLease
from processpype.communications.outbox.limiter import SharedTelegramLimiter as SharedTelegramLimiter
from processpype.communications.outbox.producer import OutboxProducer as OutboxProducer
from processpype.communications.outbox.producer import QueuedCommunicator as QueuedCommunicator
from processpype.communications.outbox.worker import OutboxWorker as OutboxWorker
