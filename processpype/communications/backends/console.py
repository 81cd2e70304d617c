"""Console backend: one line per message to stdout/stderr, or JSON lines to a file.

Attachments add one line each in text (name, type, size); a JSON line lists them under
``attachments`` with ``filename``, ``content_type`` and ``size`` (never the bytes).

The zero-credential default for trying the library and for development.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from processpype.communications.backends._json import message_json
from processpype.communications.base import Communicator
from processpype.communications.delivery import DeliveryResult
from processpype.config.models import ConsoleCommunicatorConfig
from processpype.foundation.models import OutgoingMessage

__all__ = ["ConsoleCommunicator"]


class ConsoleCommunicator(Communicator):
    """Print messages (``stream``) or append them as JSON lines (``path``)."""

    def __init__(self, name: str, config: ConsoleCommunicatorConfig) -> None:
        super().__init__(name, config)
        self._console_config = config
        self._file: IO[str] | None = None
        self._count = 0  # messages delivered (deliver, not send or edit): the references

    @property
    def supports_editing(self) -> bool:
        """True: an edit is printed as a new line marked as the edit of an earlier one."""
        return True

    @property
    def _format(self) -> str:
        config = self._console_config
        return config.format or ("json" if config.path else "text")

    async def start(self) -> None:
        """Open the output file (creating its folder) when ``path`` is set."""
        path = self._console_config.path
        if path and self._file is None:
            self._file = _open_append(path)
        self._started = True

    async def stop(self) -> None:
        """Close the output file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._started = False

    def _render(self, message: OutgoingMessage, edit_of: str | None = None) -> str:
        if self._format == "json":
            record = message_json(message)  # what the webhook accepts, this accepts
            record["time"] = datetime.now(UTC).isoformat()
            record["backend"] = self.name
            if edit_of is not None:
                record["edit_of"] = edit_of
            return json.dumps(record, ensure_ascii=False, default=str)
        head = f"[{message.severity.value.upper()}] {message.label}"
        if edit_of is not None:
            head += f" (edit of #{edit_of})"
        if message.source:
            head += f" ({message.source})"
        if message.subject:
            head += f" {message.subject}:"
        # One more line per attachment: its name, type and size (never its bytes).
        files = "".join(f"\n  attachment: {a.describe()}" for a in message.attachments)
        return f"{head} {message.message}{files}"

    async def send(self, message: OutgoingMessage) -> None:
        """Write the message as one line (``deliver``, for callers that want no result)."""
        await self.deliver(message)

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """Write the message; its reference is its number among the messages delivered."""
        self._write(self._render(message) + "\n")
        self._count += 1
        return DeliveryResult.delivered(self.name, reference=(str(self._count),))

    async def edit(self, reference: tuple[str, ...], message: OutgoingMessage) -> DeliveryResult:
        """Print the new text of message ``reference`` (a console cannot rewrite a line)."""
        edit_of = reference[0] if reference else "?"
        self._write(self._render(message, edit_of) + "\n")
        return DeliveryResult.delivered(self.name, reference=tuple(reference))

    def _write(self, line: str) -> None:
        path = self._console_config.path
        if path and self._file is None:
            self._file = _open_append(path)  # sent before start(): still to the file
        stream = self._file
        if stream is None:
            stream = sys.stderr if self._console_config.stream == "stderr" else sys.stdout
        stream.write(line)
        stream.flush()


def _open_append(path: str) -> IO[str]:
    # A local file: opening it is quick, no thread hop needed.
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.open("a", encoding="utf-8")
