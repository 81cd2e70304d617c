"""Message models shared by the async core, the backends and the blocking facade.

They live on the bottom floor, in ``processpype.foundation.models``; this documented
path re-exports them.
"""

from processpype.foundation.models import (
    Attachment,
    IncomingMessage,
    MessageHandler,
    MessageSeverity,
    OnMessageHandler,
    OutgoingMessage,
)
from processpype.foundation.models import coerce_attachments as coerce_attachments
from processpype.foundation.models import format_size as format_size

__all__ = [
    "Attachment",
    "IncomingMessage",
    "MessageHandler",
    "MessageSeverity",
    "OnMessageHandler",
    "OutgoingMessage",
]
