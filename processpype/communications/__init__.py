"""The communications subsystem: messages, backends, label routing, and the Notifier.

Names are imported on first use, so ``import processpype.communications`` stays fast and
needs none of the optional backend packages.
"""

from processpype._lazy import attach_stub

# The exported names are listed once, in __init__.pyi (read on first lookup).
__getattr__, __dir__ = attach_stub(__name__, __file__, globals())
