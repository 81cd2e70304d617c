"""Configuration models and YAML loading.

Names are imported on first use; each is listed once, in ``__init__.pyi``.
"""

from processpype._lazy import attach_stub

# The exported names are listed once, in __init__.pyi (read on first lookup).
__getattr__, __dir__ = attach_stub(__name__, __file__, globals())
