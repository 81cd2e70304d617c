"""Telegram backend on telethon: queued, rate-limited sends and optional incoming commands.

How a message travels: ``send``/``deliver`` route it by label to a chat (the label's own
chat, else the ``default`` chat; an inactive chat skips it), cut its text into pieces
Telegram accepts (``_telegram_text``) and queue it (``_telegram_queue``). The queue's
scheduler sends each chat's messages in order within Telegram's limits
(``_telegram_limits``); a flood wait pauses only that chat, other failures are retried
with exponential backoff. ``deliver`` waits for the message's outcome.

With ``listen_to_commands``, a ``NewMessage`` handler turns messages from authorized
chats (and topics, and senders) into ``IncomingMessage`` events for the dispatcher.

Importing this module requires telethon (``pip install 'processpype[telegram]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from telethon import TelegramClient, errors, events, utils
from telethon.sessions import StringSession

from processpype.communications._masking import redact
from processpype.communications.backends._telegram_limits import TelegramRateLimits, is_grouped
from processpype.communications.backends._telegram_queue import (
    ChatTarget,
    Job,
    SendFailure,
    SendQueue,
)
from processpype.communications.backends._telegram_text import Chunk, prepare_chunks
from processpype.communications.base import Communicator
from processpype.communications.delivery import DeliveryResult
from processpype.communications.errors import (
    BackendStartError,
    ConfigError,
    SendError,
    describe_error,
)
from processpype.communications.models import IncomingMessage, OutgoingMessage
from processpype.config.models import TelegramChatConfig, TelegramCommunicatorConfig

__all__ = [
    "ClientFactory",
    "TelegramCommunicator",
    "TelegramRateLimits",
    "default_session_dir",
    "set_default_client_factory",
]

logger = logging.getLogger("processpype.communications.telegram")

ClientFactory = Callable[[Any, int, str], Any]
"""Builds a client: ``factory(session, api_id, api_hash)``, like ``TelegramClient``."""

_SENDER_LOOKUP_TIMEOUT = 5.0
_DISCONNECT_TIMEOUT = 10.0
_RECONNECT_FIRST_DELAY = 0.1
_RECONNECT_MAX_DELAY = 60.0


def _telethon_client(session: Any, api_id: int, api_hash: str) -> Any:
    # flood_sleep_threshold=0: telethon would otherwise sleep through flood waits
    # inside send_message and block the caller; we schedule around them ourselves.
    return TelegramClient(session, api_id, api_hash, flood_sleep_threshold=0)


_default_factory: ClientFactory | None = None


def set_default_client_factory(factory: ClientFactory | None) -> ClientFactory | None:
    """Make backends created from now on use ``factory`` (None: telethon); return the old one.

    A backend given ``client_factory=`` keeps its own. Tests use this to point every
    backend, including those built from YAML, at one ``FakeTelegramClient``.
    """
    global _default_factory
    previous, _default_factory = _default_factory, factory
    return previous


def default_session_dir() -> Path:
    """Where file sessions live by default: the user's data directory, never the cwd."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "processpype" / "telegram"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "processpype" / "telegram"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "processpype" / "telegram"


def _chat_entity(chat_id: str) -> int | str:
    # A digit string is a phone number to telethon: numeric ids must reach it as int.
    text = chat_id.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def _topic_of(message: Any) -> int | None:
    """The forum topic of an incoming message (None outside topics or in General)."""
    reply = getattr(message, "reply_to", None)
    if reply is None or not getattr(reply, "forum_topic", False):
        return None
    # A reply inside a topic names the topic in reply_to_top_id; a plain message in
    # the topic "replies" to the topic's first message, so reply_to_msg_id is the topic.
    topic = getattr(reply, "reply_to_top_id", None) or getattr(reply, "reply_to_msg_id", None)
    return int(topic) if topic is not None else None


class TelegramCommunicator(Communicator):
    """Telegram bot communicator with send and optional receive support.

    ``client_factory(session, api_id, api_hash)`` builds the client (default: telethon's
    ``TelegramClient``, or what ``set_default_client_factory`` set). ``rate_limits``
    replaces the limits read from the config (a benchmark can speed up their clock).
    """

    def __init__(
        self,
        name: str,
        config: TelegramCommunicatorConfig,
        *,
        client_factory: ClientFactory | None = None,
        rate_limits: TelegramRateLimits | None = None,
    ) -> None:
        if not isinstance(config, TelegramCommunicatorConfig):
            raise TypeError(
                f"TelegramCommunicator {name!r} needs a TelegramCommunicatorConfig, "
                f"got {type(config).__name__}"
            )
        super().__init__(name, config)
        self._tg_config = config
        self._client_factory: ClientFactory = client_factory or _default_factory or _telethon_client
        self._limits = rate_limits or TelegramRateLimits.from_config(config)
        self._secrets = [
            secret
            for secret in (
                config.token.get_secret_value(),
                config.api_hash.get_secret_value(),
                config.session_string.get_secret_value(),
            )
            if len(secret) >= 4
        ]
        self._targets = self._build_targets(config)
        self._client: Any = None
        self._queue: SendQueue | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._stopping = False
        self._handler_registered = False
        self.undelivered_on_stop = 0
        """How many queued messages the last ``stop()`` could not deliver."""

    @staticmethod
    def _build_targets(config: TelegramCommunicatorConfig) -> dict[str, ChatTarget]:
        # Every label has a chat (or a default one): TelegramCommunicatorConfig checks it.
        targets: dict[str, ChatTarget] = {}
        for label, chat in config.chats.items():
            entity = _chat_entity(chat.chat_id)
            targets[label] = ChatTarget(
                entity=entity,
                label=label,
                topic_id=chat.topic_id,
                grouped=is_grouped(entity, chat.kind),
            )
        return targets

    # -- properties -----------------------------------------------------------------

    @property
    def supports_receiving(self) -> bool:
        """True when ``listen_to_commands`` is set."""
        return self._tg_config.listen_to_commands

    @property
    def client(self) -> Any:
        """The telethon client (or fake) while started, else None."""
        return self._client

    @property
    def rate_limits(self) -> TelegramRateLimits:
        """The limits this backend sends within."""
        return self._limits

    @property
    def pending(self) -> int:
        """Messages queued (or waiting for room) without an outcome yet."""
        return self._queue.pending if self._queue is not None else 0

    def _scrub(self, text: str) -> str:
        return redact(text, self._secrets)

    def _scrubbed(self, exc: BaseException) -> str:
        return self._scrub(describe_error(exc))

    # -- lifecycle ------------------------------------------------------------------

    def session_file(self) -> Path:
        """The file session used when listening without a ``session_string``."""
        safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name) or "telegram"
        configured = self._tg_config.session_path
        if configured:
            path = Path(configured).expanduser()
            if path.is_dir() or configured.endswith(("/", os.sep)):
                path = path / f"{safe_name}.session"
        else:
            path = default_session_dir() / f"{safe_name}.session"
        return path

    def _session(self) -> Any:
        session_string = self._tg_config.session_string.get_secret_value().strip()
        if session_string:
            try:
                return StringSession(session_string)
            except Exception:
                # No "from exc": the cause could quote part of the secret.
                raise ConfigError(
                    "not a valid telethon session string (create one with "
                    "StringSession.save(), or leave it empty)",
                    key=f"backends.{self.name}.session_string",
                ) from None
        if not self._tg_config.listen_to_commands:
            return StringSession()  # send-only: nothing worth keeping on disk
        path = self.session_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create it owner-only before telethon writes the login into it (telethon
            # adds the .session suffix when the path lacks it).
            stored = (
                path if path.name.endswith(".session") else path.with_name(f"{path.name}.session")
            )
            stored.touch(mode=0o600, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the session file {str(path)!r}: {exc.strerror}",
                key=f"backends.{self.name}.session_path",
            ) from exc
        return str(path)

    def _check_token(self) -> str:
        token = self._tg_config.token.get_secret_value().strip()
        key = f"backends.{self.name}.token"
        if not token:
            # telethon would fall back to an interactive phone login reading stdin.
            raise ConfigError("cannot be empty: set the bot token from @BotFather", key=key)
        if ":" not in token:
            raise ConfigError(
                "does not look like a bot token ('<bot id>:<secret>' from @BotFather)", key=key
            )
        return token

    async def start(self) -> None:
        """Log the bot in, register the incoming handler if listening, start sending."""
        if self._started:
            return
        token = self._check_token()
        session = self._session()
        config = self._tg_config
        try:
            client = self._client_factory(
                session, config.api_id, config.api_hash.get_secret_value()
            )
        except ValueError as exc:
            raise ConfigError(
                f"the Telegram client refused api_id/api_hash: {self._scrubbed(exc)}",
                key=f"backends.{self.name}",
            ) from exc
        with contextlib.suppress(AttributeError):
            client.flood_sleep_threshold = 0
        self._stopping = False
        self._connect_lock = asyncio.Lock()
        try:
            await client.start(bot_token=token)
            me = await client.get_me()
        except asyncio.CancelledError:
            await self._disconnect_quietly(client)
            raise
        except Exception as exc:
            await self._disconnect_quietly(client)
            if isinstance(exc, errors.RPCError):
                what = "Telegram refused the bot login (check token, api_id and api_hash)"
            elif isinstance(exc, (OSError, TimeoutError)):
                what = "could not connect to Telegram"
            else:
                what = "could not start the Telegram client"
            raise BackendStartError(
                f"{self.name}: {what}: {self._scrubbed(exc)}", backend=self.name
            ) from exc
        if isinstance(session, str):
            _restrict_permissions(session)
        self._client = client
        if config.listen_to_commands:
            client.add_event_handler(self._on_new_message, events.NewMessage(incoming=True))
            self._handler_registered = True
            self._watchdog = asyncio.get_running_loop().create_task(
                self._watch_connection(), name=f"processpype-telegram-{self.name}-watchdog"
            )
        self._queue = SendQueue(
            self.name,
            limits=self._limits,
            max_size=config.max_queue_size,
            send_chunk=self._send_chunk,
            classify=self._classify,
            max_attempts=config.max_attempts,
            retry_base_delay=config.retry_base_delay,
        )
        self._queue.start()
        self._started = True
        username = getattr(me, "username", None)
        logger.info(
            "%s: connected to Telegram as %s%s",
            self.name,
            f"@{username}" if username else "the bot",
            " (listening for commands)" if config.listen_to_commands else "",
        )

    async def stop(self) -> None:
        """Deliver what is queued (up to ``stop_timeout``), then disconnect.

        Messages still queued after that fail; ``undelivered_on_stop`` says how many.
        """
        self._stopping = True
        undelivered = 0
        if self._queue is not None:
            # The queue stays in place while it drains: send() meanwhile is refused
            # ("stopping") and flush() still waits for it.
            undelivered = await self._queue.close(self._tg_config.stop_timeout)
            self._queue = None
        self.undelivered_on_stop = undelivered
        if undelivered:
            logger.warning(
                "%s: stopped with %d message(s) not delivered: the queue did not drain "
                "within stop_timeout=%ss",
                self.name,
                undelivered,
                self._tg_config.stop_timeout,
            )
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            if self._handler_registered:
                try:
                    client.remove_event_handler(self._on_new_message)
                except Exception as exc:
                    logger.debug("%s: removing the handler failed: %s", self.name, exc)
                self._handler_registered = False
            await self._disconnect_quietly(client)
        self._started = False

    async def _disconnect_quietly(self, client: Any) -> None:
        try:
            async with asyncio.timeout(_DISCONNECT_TIMEOUT):
                await client.disconnect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("%s: disconnecting failed: %s", self.name, self._scrubbed(exc))

    async def _reconnect(self) -> None:
        client = self._client
        lock = self._connect_lock
        if client is None or lock is None:
            raise ConnectionError("the backend is not started")
        async with lock:
            if not client.is_connected():
                try:
                    async with asyncio.timeout(self._tg_config.send_timeout):
                        await client.connect()
                except TimeoutError:
                    # Nothing was sent yet: a connection error, retried like one.
                    raise ConnectionError(
                        f"reconnecting to Telegram took longer than send_timeout "
                        f"({self._tg_config.send_timeout:g}s)"
                    ) from None
                logger.info("%s: reconnected to Telegram", self.name)

    def _is_stopping(self) -> bool:
        return self._stopping

    async def _watch_connection(self) -> None:
        """Keep a listening client connected: reconnect with backoff after a drop."""
        delay = _RECONNECT_FIRST_DELAY
        loop = asyncio.get_running_loop()
        while not self._is_stopping():
            client = self._client
            if client is None:
                return
            began = loop.time()
            try:
                await client.run_until_disconnected()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "%s: the Telegram connection failed: %s", self.name, self._scrubbed(exc)
                )
            if self._is_stopping():
                return
            if loop.time() - began > 30:
                delay = _RECONNECT_FIRST_DELAY
            logger.warning("%s: disconnected from Telegram; reconnecting", self.name)
            while not self._is_stopping():
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_DELAY)
                try:
                    await self._reconnect()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning(
                        "%s: reconnecting failed (next try in %.1fs): %s",
                        self.name,
                        delay,
                        self._scrubbed(exc),
                    )

    # -- sending --------------------------------------------------------------------

    def _route(self, label: str) -> tuple[ChatTarget | None, str]:
        """The chat for ``label`` (its own, else ``default``), or None and why it is skipped."""
        chat_label = label if label in self._targets else "default"
        chat = self._tg_config.chats.get(chat_label)
        if chat is None:
            raise SendError(
                f"{self.name}: no chat for label {label!r} and no 'default' chat; add "
                f"chats.{label} to the config",
                backend=self.name,
                attempts=0,
                permanent=True,
            )
        if not chat.active:
            return None, f"the chat for label {chat_label!r} is inactive (active: false)"
        return self._targets[chat_label], ""

    def _make_job(self, message: OutgoingMessage, target: ChatTarget) -> Job:
        if self._queue is None or not self._started:
            raise SendError(
                f"{self.name}: the backend is not started", backend=self.name, attempts=0
            )
        if self._stopping:
            raise SendError(f"{self.name}: the backend is stopping", backend=self.name, attempts=0)
        chunks = prepare_chunks(message.message, self._tg_config.parse_mode)
        if not chunks:
            raise SendError(
                f"{self.name}: the message text is empty; Telegram cannot send an empty message",
                backend=self.name,
                attempts=0,
                permanent=True,
            )
        outcome: asyncio.Future[DeliveryResult] = asyncio.get_running_loop().create_future()
        return Job(message, target, chunks, outcome)

    async def _enqueue(self, message: OutgoingMessage) -> Job | str:
        """Queue ``message``; return its job, or why it is skipped."""
        target, reason = self._route(message.label)
        if target is None:
            return reason
        job = self._make_job(message, target)
        queue = self._queue
        assert queue is not None  # _make_job checked it
        await queue.put(job, self._tg_config.send_timeout)
        return job

    async def send(self, message: OutgoingMessage) -> None:
        """Queue ``message`` for its chat; waits (up to ``send_timeout``) while the queue is full.

        Raises ``QueueFullError`` when no room came in time, ``SendError`` when the
        message cannot be sent at all (empty text, no chat, not started).
        """
        queued = await self._enqueue(message)
        if isinstance(queued, str):
            logger.debug("%s: message for label %r skipped: %s", self.name, message.label, queued)

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """Queue ``message`` and wait for its outcome: delivered (with attempts) or failed.

        Cancelling the wait leaves the message queued.
        """
        queued = await self._enqueue(message)
        if isinstance(queued, str):
            return DeliveryResult.skipped(self.name, queued)
        return await asyncio.shield(queued.outcome)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued message has an outcome; False when ``timeout`` ran out."""
        queue = self._queue
        if queue is None:
            return True
        return await queue.join(timeout)

    async def _send_chunk(self, job: Job, chunk: Chunk) -> None:
        client = self._client
        if client is None:
            raise ConnectionError("the backend is stopping")
        if not client.is_connected():
            await self._reconnect()
        async with asyncio.timeout(self._tg_config.send_timeout):
            await client.send_message(
                job.target.entity,
                chunk.text,
                reply_to=job.target.topic_id,
                parse_mode=chunk.parse_mode,
                formatting_entities=chunk.entities,
            )

    def _classify(self, exc: BaseException) -> SendFailure:
        reason = self._scrubbed(exc)
        seconds = getattr(exc, "seconds", None)
        if isinstance(exc, errors.FloodError) and isinstance(seconds, int | float):
            return SendFailure(
                "flood", reason, delay=max(float(seconds), 0.0) * self._limits.time_scale
            )
        if isinstance(exc, TimeoutError):
            # Telegram may have received it: retrying could post the message twice.
            return SendFailure(
                "fatal",
                f"no answer within send_timeout={self._tg_config.send_timeout}s; not retried "
                "because Telegram may have received it",
            )
        if isinstance(exc, errors.ServerError | errors.TimedOutError):
            return SendFailure("retry", reason)
        if isinstance(exc, errors.RPCError):
            return SendFailure("fatal", reason)  # 400, 401, 403, 404, 406: retrying cannot help
        if isinstance(exc, OSError):
            return SendFailure("retry", reason)  # ConnectionError included: reconnect, retry
        if isinstance(exc, ValueError | TypeError):
            return SendFailure("fatal", reason)  # e.g. an unknown chat or username
        return SendFailure("retry", reason)

    # -- receiving ------------------------------------------------------------------

    def _chat_matches(self, target: ChatTarget, event: Any) -> bool:
        if isinstance(target.entity, int):
            return bool(target.entity == event.chat_id)
        username = getattr(getattr(event, "chat", None), "username", None)
        return bool(username) and target.entity.lstrip("@").lower() == str(username).lower()

    @staticmethod
    def _topic_matches(chat: TelegramChatConfig, topic: int | None) -> bool:
        if chat.topic_id is None:
            return True
        # The General topic (id 1) carries no topic header.
        return chat.topic_id == topic or (chat.topic_id == 1 and topic is None)

    def _authorize(self, event: Any, topic: int | None) -> tuple[str | None, str]:
        """The label of the chat config that accepts this message, or None and why not."""
        chats = self._tg_config.chats
        candidates = [
            label for label, target in self._targets.items() if self._chat_matches(target, event)
        ]
        if not candidates:
            return None, "not a configured chat"
        candidates = [label for label in candidates if chats[label].command_authorized]
        if not candidates:
            return None, "the chat is not command_authorized"
        candidates = [label for label in candidates if self._topic_matches(chats[label], topic)]
        if not candidates:
            return None, "outside the configured topic"
        sender_id = event.sender_id
        candidates = [
            label
            for label in candidates
            if not chats[label].allowed_sender_ids or sender_id in chats[label].allowed_sender_ids
        ]
        if not candidates:
            return None, "the sender is not in allowed_sender_ids"
        # A chat config naming this very topic wins over one for the whole chat.
        candidates.sort(key=lambda label: chats[label].topic_id is None)
        return candidates[0], ""

    async def _on_new_message(self, event: Any) -> None:
        """telethon ``NewMessage`` handler: publish authorized messages, drop the rest."""
        try:
            message = event.message
            topic = _topic_of(message)
            label, reason = self._authorize(event, topic)
            if label is None:
                # Never the text: it comes from someone we do not know.
                logger.debug(
                    "%s: ignored message %s in chat %s from sender %s: %s",
                    self.name,
                    event.id,
                    event.chat_id,
                    event.sender_id,
                    reason,
                )
                return
            text = event.raw_text or ""
            if not text:
                logger.debug("%s: ignored message %s without text", self.name, event.id)
                return
            incoming = IncomingMessage(
                text=text,
                sender=await self._sender_name(event),
                sender_id=str(event.sender_id) if event.sender_id is not None else None,
                chat_label=label,
                backend_name=self.name,
                timestamp=getattr(message, "date", None),
                metadata={"chat_id": event.chat_id, "message_id": event.id, "topic_id": topic},
                raw_event=event,
            )
            self._publish_incoming(incoming)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.error(
                "%s: handling an incoming message failed: %s", self.name, self._scrubbed(exc)
            )

    async def _sender_name(self, event: Any) -> str | None:
        try:
            async with asyncio.timeout(_SENDER_LOOKUP_TIMEOUT):
                sender = await event.get_sender()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.debug("%s: could not look the sender up: %s", self.name, self._scrubbed(exc))
            return None
        if sender is None:
            return None
        return utils.get_display_name(sender) or None


def _restrict_permissions(session: str) -> None:
    """Make a file session (it holds the login) readable by its owner only."""
    path = Path(session if session.endswith(".session") else f"{session}.session")
    try:
        if path.exists():
            path.chmod(0o600)
    except OSError:
        pass
