"""Every error a user of processpype can catch (the documented path).

They live on the bottom floor, in ``processpype.foundation.errors``, whose docstring
draws the tree; this module re-exports every one of them (its ``__all__``).
"""

# One list of names, the bottom floor's: a name added there shows here too.
from processpype.foundation.errors import *  # noqa: F403
from processpype.foundation.errors import __all__ as __all__
