"""processpype: send notifications to Telegram, email and webhooks, routed by label.

Quick start::

    from processpype import Notifier

    with Notifier.from_yaml("notify.yaml") as notifier:
        notifier.send("Backup done", label="ops").raise_for_errors()

Names are imported on first use, so ``import processpype`` costs almost nothing.
"""

from processpype._lazy import attach_stub

__version__ = "0.1.0"

# The exported names are listed once, in __init__.pyi (read on first lookup).
__getattr__, __dir__ = attach_stub(__name__, __file__, globals())
