"""A Redis outbox shared by many processes and hosts: at-least-once delivery, bot-wide limits.

With ``communications.outbox`` in the config, ``Notifier.send``/``send_nowait``/``asend``
put each message in a Redis stream and report ``queued`` once Redis has it;
``processpype-notify worker`` processes deliver it with the configured backends
(``OutboxWorker``). Telegram sends of every worker share one set of rate windows kept
in Redis (``SharedTelegramLimiter``); one process at a time holds a receiving bot's
update connection (``UpdateLease``) and relays what it receives to every Notifier.
Needs the ``redis`` extra: ``pip install 'processpype[redis]'``. See docs/scale-out.md.
"""

from __future__ import annotations

from processpype._lazy import lazy_exports

# Not `from typing import TYPE_CHECKING`: importing typing would double this import's cost.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from processpype.communications.outbox.admin import (
        DeadLetter,
        OutboxStatus,
        outbox_status,
        retry_dead_letters,
    )
    from processpype.communications.outbox.lease import IncomingReader, UpdateLease
    from processpype.communications.outbox.limiter import SharedTelegramLimiter
    from processpype.communications.outbox.producer import OutboxProducer, QueuedCommunicator
    from processpype.communications.outbox.worker import OutboxWorker

__all__ = [
    "DeadLetter",
    "IncomingReader",
    "OutboxProducer",
    "OutboxStatus",
    "OutboxWorker",
    "QueuedCommunicator",
    "SharedTelegramLimiter",
    "UpdateLease",
    "outbox_status",
    "retry_dead_letters",
]

_LOCATIONS = {
    "DeadLetter": "processpype.communications.outbox.admin",
    "IncomingReader": "processpype.communications.outbox.lease",
    "OutboxProducer": "processpype.communications.outbox.producer",
    "OutboxStatus": "processpype.communications.outbox.admin",
    "OutboxWorker": "processpype.communications.outbox.worker",
    "QueuedCommunicator": "processpype.communications.outbox.producer",
    "SharedTelegramLimiter": "processpype.communications.outbox.limiter",
    "UpdateLease": "processpype.communications.outbox.lease",
    "outbox_status": "processpype.communications.outbox.admin",
    "retry_dead_letters": "processpype.communications.outbox.admin",
}

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LOCATIONS)
