"""A Redis outbox shared by many processes and hosts: at-least-once delivery, bot-wide limits.

With ``communications.outbox`` in the config, ``Notifier.send``/``send_nowait``/``asend``
put each message in a Redis stream and report ``queued`` once Redis has it;
``processpype-notify worker`` processes deliver it with the configured backends
(``OutboxWorker``). Telegram sends of every worker share one set of rate windows kept
in Redis (``SharedTelegramLimiter``); one process at a time holds a receiving bot's
update connection (``UpdateLease``) and relays what it receives to every Notifier.
Needs the ``redis`` extra: ``pip install 'processpype[redis]'``. See docs/scale-out.md.
"""

from processpype._lazy import attach_stub

# The exported names are listed once, in __init__.pyi (read on first lookup).
__getattr__, __dir__ = attach_stub(__name__, __file__, globals())
