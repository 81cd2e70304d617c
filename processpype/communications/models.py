"""Message models shared by the async core, the backends and the blocking facade.

They live on the bottom floor, in ``processpype.foundation.models``; this documented
path re-exports every one of them (its ``__all__``).
"""

# One list of names, the bottom floor's: a name added there shows here too.
from processpype.foundation.models import *  # noqa: F403
from processpype.foundation.models import __all__ as __all__
