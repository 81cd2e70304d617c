"""Where a send-only Telegram backend keeps its bot's login between runs.

Every new telethon ``StringSession()`` means a new auth key and a new
``auth.ImportBotAuthorization``: a cron job or a restart loop that logs in on each run
draws login flood waits of tens of minutes. So a send-only backend keeps its session
string in an owner-only file named after the bot's id (public, unlike the token), and
remembers a login flood wait in a second file so that a later run does not ask again
before the wait ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

__all__ = ["SessionStore"]

logger = logging.getLogger("processpype.communications.telegram")


class SessionStore:
    """The files of one bot in ``directory``: its session string and its login wait."""

    def __init__(self, directory: Path, bot_id: str) -> None:
        self.directory = directory
        self.bot_id = bot_id

    @property
    def session_path(self) -> Path:
        """The owner-only file holding the bot's session string."""
        return self.directory / f"bot{self.bot_id}.string-session"

    @property
    def login_wait_path(self) -> Path:
        """The file holding when Telegram allows the next login (Unix time)."""
        return self.directory / f"bot{self.bot_id}.login-wait"

    def load(self) -> str:
        """The stored session string, or "" when there is none (or it cannot be read)."""
        try:
            return self.session_path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return ""
        except (OSError, UnicodeError) as exc:
            logger.warning(
                "cannot read the stored Telegram session %s (%s): logging in again",
                self.session_path,
                exc,
            )
            return ""

    def save(self, session_string: str) -> None:
        """Store ``session_string`` atomically in an owner-only file."""
        self._write(self.session_path, session_string)

    def discard(self) -> None:
        """Forget the stored session (Telegram no longer accepts it)."""
        with contextlib.suppress(OSError):
            self.session_path.unlink()

    def login_allowed_at(self) -> float:
        """When (Unix time) Telegram allows the next login; 0 when it does now."""
        try:
            return float(self.login_wait_path.read_text(encoding="ascii").strip())
        except (OSError, ValueError, UnicodeError):
            return 0.0

    def remember_login_wait(self, seconds: float) -> float:
        """Write down that Telegram refuses logins for ``seconds``; return until when."""
        until = time.time() + seconds
        try:
            self._write(self.login_wait_path, f"{until:.0f}")
        except OSError as exc:
            logger.warning("cannot write %s: %s", self.login_wait_path, exc)
        return until

    def forget_login_wait(self) -> None:
        """The login succeeded: no wait is pending any more."""
        with contextlib.suppress(OSError):
            self.login_wait_path.unlink()

    def _write(self, path: Path, text: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A temporary file in the same folder, created owner-only (mkstemp uses 0600),
        # then renamed over the old one: a reader never sees half a session, and the
        # login is never readable by others, not even for an instant.
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(text)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
