"""Telegram backend on telethon: queued, rate-limited sends and optional incoming commands.

How a message travels: ``send``/``deliver`` route it by label to a chat (the label's own
chat, else the ``default`` chat; an inactive chat skips it), cut its text into pieces
Telegram accepts (``_telegram_text``) and queue it (``_telegram_queue``). The queue's
scheduler sends each chat's messages in order within Telegram's limits
(``_telegram_limits``); a flood wait pauses only that chat (or, reaching a second chat
meanwhile, the bot), server and connection failures are retried with exponential
backoff. ``deliver`` waits for the message's outcome.

Where telethon's own behaviour differs from Telegram's, the backend corrects it: it
bounds ``start()`` (telethon bounds only the TCP connect), clears telethon's flood
memory per request type (Telegram's waits are per chat), closes a connection that
stopped answering (telethon would keep it half-open), and keeps a send-only bot's
login between runs (``_telegram_session``), since each login counts against a limit.

With ``listen_to_commands``, a ``NewMessage`` handler turns messages from authorized
chats (and topics, and senders) into ``IncomingMessage`` events for the dispatcher;
missed updates are caught up on connecting, and commands older than
``max_command_age`` dropped. Attachments become pieces sent with
``send_file`` (``_telegram_files``).

Edits of sent messages, and questions with inline buttons answered through callback
queries, live in ``_telegram_interactive``; they travel through the same queue.

Importing this module without telethon raises ``BackendUnavailableError``
(``pip install 'processpype[telegram]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    from telethon import TelegramClient, errors, events, utils
    from telethon.sessions import StringSession
except ModuleNotFoundError as exc:  # pragma: no cover - the minimal environment tests it
    from processpype.communications.backends._requires import unavailable

    raise unavailable(exc, "telegram", "telethon", "telegram") from None

from processpype.communications.ask import Answer, Question
from processpype.communications.backends._retry import backoff_delay
from processpype.communications.backends._telegram_files import (
    FileChunk,
    UploadTimeoutError,
    plan_pieces,
    send_file_chunk,
)
from processpype.communications.backends._telegram_interactive import (
    TelegramInteractions,
    TrackedJob,
    remember_piece,
    with_reference,
)
from processpype.communications.backends._telegram_limits import (
    SendLimiter,
    TelegramRateLimits,
    forget_flood_memory,
    is_grouped,
)
from processpype.communications.backends._telegram_queue import (
    ChatTarget,
    Job,
    SendFailure,
    SendQueue,
)
from processpype.communications.backends._telegram_session import SessionStore
from processpype.communications.backends._telegram_text import Chunk, prepare_capped
from processpype.communications.base import Communicator
from processpype.communications.delivery import DeliveryResult
from processpype.config.models import TelegramChatConfig, TelegramCommunicatorConfig
from processpype.foundation.errors import (
    BackendStartError,
    ConfigError,
    SendError,
    describe_error,
)
from processpype.foundation.models import IncomingMessage, OutgoingMessage

__all__ = [
    "ClientFactory",
    "TelegramCommunicator",
    "TelegramRateLimits",
    "default_session_dir",
    "set_default_client_factory",
    "telethon_client",
]

logger = logging.getLogger("processpype.communications.telegram")

ClientFactory = Callable[..., Any]
"""Builds a client: ``factory(session, api_id, api_hash, **options)``, like ``TelegramClient``.

``options`` are the keyword arguments of ``TelegramClient`` the backend relies on
(``TelegramCommunicator.client_options()``); ``telethon_client`` is the default. A
factory written for earlier versions, taking ``(session, api_id, api_hash)`` only, still
works: it gets the options it names (none), and a warning says which it misses.
"""

_SENDER_LOOKUP_TIMEOUT = 5.0
_MAX_OTHER_CHATS = 10_000
_DISCONNECT_TIMEOUT = 10.0
_RECONNECT_FIRST_DELAY = 0.1
_RECONNECT_MAX_DELAY = 60.0
# telethon repeats a request itself after a server error (sleeping 2 s) and after a
# DC migration; one repeat follows a migration, and leaves lasting server errors to
# the backend's own retries (backoff, max_attempts), which a user can tune.
_REQUEST_RETRIES = 1
# telethon's errors that its _call repeats internally: Telegram's servers failing, not
# the request being wrong.
_SERVER_ERRORS: tuple[type[BaseException], ...] = (
    errors.ServerError,
    errors.TimedOutError,
    errors.RpcCallFailError,
    errors.RpcMcgetFailError,
    errors.InterdcCallErrorError,
    errors.InterdcCallRichErrorError,
)
_UNSUCCESSFUL = "Request was unsuccessful"
_CLIENT_DEFAULTS: dict[str, Any] = {
    # telethon would otherwise sleep through flood waits inside send_message and block
    # the caller; the backend schedules around them itself.
    "flood_sleep_threshold": 0,
    "request_retries": _REQUEST_RETRIES,
    # Surface the real RPC error (ServerError, ...) rather than telethon's
    # ValueError("Request was unsuccessful N time(s)").
    "raise_last_call_error": True,
}


def telethon_client(session: Any, api_id: int, api_hash: str, **options: Any) -> Any:
    """Build telethon's ``TelegramClient`` exactly as the backend does (``options`` on top).

    Tests reach the real client's code through this: wrap it in a ``client_factory``
    that points ``client.session.set_dc(...)`` at a local server, or stubs
    ``client._sender``.
    """
    return TelegramClient(session, api_id, api_hash, **{**_CLIENT_DEFAULTS, **options})


def _build_client(
    factory: ClientFactory, session: Any, api_id: int, api_hash: str, options: dict[str, Any]
) -> tuple[Any, list[str]]:
    """Call ``factory`` with the options it accepts; return the client and the options left out.

    Before ``client_options`` existed a factory took ``(session, api_id, api_hash)``:
    such a factory gets only the keyword arguments it names (with ``**kwargs``, all).
    """
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a C callable): pass them all
        return factory(session, api_id, api_hash, **options), []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return factory(session, api_id, api_hash, **options), []
    named = {
        p.name
        for p in parameters[3:]
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    taken = {key: value for key, value in options.items() if key in named}
    return factory(session, api_id, api_hash, **taken), sorted(set(options) - set(taken))


def _is_server_error(exc: BaseException) -> bool:
    """A failure of Telegram's servers, as telethon raises it with either flag."""
    if isinstance(exc, _SERVER_ERRORS):
        return True
    return isinstance(exc, ValueError) and str(exc).startswith(_UNSUCCESSFUL)


def _server_of(client: Any) -> str:
    """The host:port the client talks to (the session's data centre), for errors."""
    session = getattr(client, "session", None)
    address = getattr(session, "server_address", None)
    port = getattr(session, "port", None)
    if address:
        return f"{address}:{port}" if port else str(address)
    return "Telegram"


def _connect_stage(client: Any, had_auth_key: bool) -> str:
    """How far a ``connect()`` that did not finish came (read from telethon's sender)."""
    sender = getattr(client, "_sender", None)
    connection = getattr(sender, "_connection", None)
    if sender is None or connection is None or not getattr(connection, "_connected", False):
        return "connecting"
    if not had_auth_key and not getattr(sender, "auth_key", None):
        return "the auth-key exchange"
    return "the first request after connecting (InitConnection)"


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

    ``client_factory(session, api_id, api_hash, **options)`` builds the client (default:
    ``telethon_client``, or what ``set_default_client_factory`` set); ``options`` are
    ``client_options()``, and a factory taking only the first three still works. ``rate_limits``
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
        self._client_factory: ClientFactory = client_factory or _default_factory or telethon_client
        self._limits = rate_limits or TelegramRateLimits.from_config(config)
        self._targets = self._build_targets(config)
        self._client: Any = None
        self._queue: SendQueue | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._stopping = False
        self._handler_registered = False
        self._store: SessionStore | None = None
        self._username_ids: dict[str, Any] = {}  # @username chats seen, by their chat id
        self._other_chat_ids: set[Any] = set()  # chats known not to be @username chats
        self._stored_session = ""
        self._login_allowed_at = 0.0  # Unix time; Telegram's last login flood wait
        self.undelivered_on_stop = 0
        """How many queued messages the last ``stop()`` could not deliver."""
        self._interactions = TelegramInteractions(self)  # edits and questions
        self.send_limiter: SendLimiter | None = None
        """Limits shared with other processes (an outbox worker sets it); None: in-process only."""

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
    def supports_editing(self) -> bool:
        """True: sent messages can be edited (``edit``), within the chat's rate limits."""
        return True

    @property
    def supports_asking(self) -> bool:
        """True when ``listen_to_commands`` is set (button presses must reach the bot)."""
        return self._tg_config.listen_to_commands

    async def edit(self, reference: tuple[str, ...], message: OutgoingMessage) -> DeliveryResult:
        """Edit the message sent as ``reference`` (its pieces' ids) into ``message``."""
        return await self._interactions.edit(reference, message)

    async def ask(self, question: Question) -> Answer | None:
        """Post ``question`` with a button per choice; wait for the first authorized answer."""
        return await self._interactions.ask(question)

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

    def _scrubbed(self, exc: BaseException) -> str:
        # The token, api_hash and session string are registered secrets (Communicator
        # registers every secret of the config): describe_error masks them.
        return describe_error(exc)

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
            return self._send_only_session()
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

    def _session_store(self) -> SessionStore | None:
        """The bot's login files (by bot id), or None when nothing may be kept on disk."""
        config = self._tg_config
        if config.session_string.get_secret_value().strip():
            return None
        if not config.listen_to_commands and not config.persist_session:
            return None
        bot_id = config.token.get_secret_value().split(":", 1)[0]
        return SessionStore(self.session_file().parent, bot_id)

    def _send_only_session(self) -> Any:
        """A string session: the bot's stored login, or a fresh one (log in again)."""
        store = self._store
        self._stored_session = ""
        if store is None:
            return StringSession()  # persist_session: false, the reference's behaviour
        stored = store.load()
        if stored:
            try:
                session = StringSession(stored)
            except Exception:
                logger.warning(
                    "%s: the stored session %s is not readable; logging in again",
                    self.name,
                    store.session_path,
                )
                store.discard()
            else:
                self._stored_session = stored
                return session
        return StringSession()

    def _save_session(self, client: Any) -> None:
        """Keep a send-only client's login for the next run (owner-only file)."""
        store = self._store
        if store is None or self._tg_config.listen_to_commands:
            return
        session = getattr(client, "session", None)
        if not isinstance(session, StringSession):
            return
        try:
            current = session.save()
        except Exception as exc:
            logger.debug("%s: the session could not be saved: %s", self.name, exc)
            return
        if current and current != self._stored_session:
            try:
                store.save(current)
            except OSError as exc:
                logger.warning(
                    "%s: cannot keep the login in %s (%s): the next start logs in again",
                    self.name,
                    store.session_path,
                    exc.strerror or exc,
                )
                return
            self._stored_session = current

    def _check_login_wait(self) -> None:
        """Refuse to start while Telegram's last login flood wait has not ended."""
        allowed_at = self._login_allowed_at
        if self._store is not None:
            allowed_at = max(allowed_at, self._store.login_allowed_at())
        left = allowed_at - time.time()
        if left > 0:
            until = datetime.fromtimestamp(allowed_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            raise BackendStartError(
                f"{self.name}: Telegram asks to wait {left:.0f} s before logging in again "
                f"(until {until}); not trying before then",
                backend=self.name,
            )

    def _login_flood(self, exc: errors.FloodError) -> BackendStartError:
        seconds = float(getattr(exc, "seconds", 0) or 0)
        self._login_allowed_at = time.time() + seconds
        if self._store is not None:
            self._login_allowed_at = self._store.remember_login_wait(seconds)
        return BackendStartError(
            f"{self.name}: Telegram asks to wait {seconds:.0f} s before logging in again "
            "(too many logins of this bot); a later start() waits until then",
            backend=self.name,
        )

    def client_options(self) -> dict[str, Any]:
        """The ``TelegramClient`` keyword arguments this backend builds its client with."""
        listening = self._tg_config.listen_to_commands
        return {
            **_CLIENT_DEFAULTS,
            # telethon's own timeout bounds only the TCP connect: start() bounds the rest.
            "timeout": self._tg_config.connect_timeout,
            # A send-only client has no use for updates; a listening one fetches those
            # it missed while down (catch_up) on start and after reconnecting.
            "receive_updates": listening,
            "catch_up": listening,
        }

    async def start(self) -> None:
        """Log the bot in (within ``connect_timeout``), listen if asked, start sending.

        Raises ``BackendStartError`` naming the server and the step that failed or ran
        out of time (never the token), and ``ConfigError`` for a config telethon refuses.
        """
        if self._started:
            return
        # Stripped, not empty and '<bot id>:<secret>': TelegramCommunicatorConfig checks it.
        token = self._tg_config.token.get_secret_value()
        self._store = self._session_store()
        self._check_login_wait()
        session = self._session()
        config = self._tg_config
        try:
            client, left_out = _build_client(
                self._client_factory,
                session,
                config.api_id,
                config.api_hash.get_secret_value(),
                self.client_options(),
            )
        except ValueError as exc:
            raise ConfigError(
                f"the Telegram client refused api_id/api_hash: {self._scrubbed(exc)}",
                key=f"backends.{self.name}",
            ) from exc
        if left_out:
            logger.warning(
                "%s: the client_factory takes no %s: the client is built without them "
                "(accept **options to get them); flood_sleep_threshold is set to 0 on it",
                self.name,
                ", ".join(left_out),
            )
        # Whatever the factory did: telethon must raise flood waits, not sleep in them.
        with contextlib.suppress(AttributeError):
            client.flood_sleep_threshold = 0
        self._stopping = False
        self._connect_lock = asyncio.Lock()
        if config.listen_to_commands:
            # Before connecting: telethon fetches the missed updates (catch_up) as soon
            # as connect() ends, and hands them only to handlers registered by then.
            client.add_event_handler(self._on_new_message, events.NewMessage(incoming=True))
            self._interactions.listen(client)
        try:
            me = await self._log_in(client, token, session)
        except BaseException:
            if config.listen_to_commands:
                with contextlib.suppress(Exception):
                    client.remove_event_handler(self._on_new_message)
                self._interactions.stop(client)
            raise
        if isinstance(session, str):
            _restrict_permissions(session)
        self._save_session(client)
        if self._store is not None:
            self._store.forget_login_wait()
        self._client = client
        if config.listen_to_commands:
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
            max_flood_wait=config.max_flood_wait,
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

    async def _log_in(self, client: Any, token: str, session: Any) -> Any:
        """Connect, log in and fetch the bot's user, all within ``connect_timeout``."""
        limit = self._tg_config.connect_timeout
        had_auth_key = bool(getattr(session, "auth_key", None))
        step = "connecting"
        try:
            async with asyncio.timeout(limit) as deadline:
                await client.connect()
                step = "the bot login"
                await client.start(bot_token=token)
                step = "get_me"
                me = await client.get_me()
        except asyncio.CancelledError:
            await self._disconnect_quietly(client)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # Not our cancellation: telethon cancels its pending requests when the
            # connection closes under them.
            raise BackendStartError(
                f"{self.name}: the connection to Telegram at {_server_of(client)} closed "
                f"during {step}",
                backend=self.name,
            ) from None
        except Exception as exc:
            server = _server_of(client)
            if step == "connecting":
                step = _connect_stage(client, had_auth_key)
            # The client may be half-open (link up, no update or keepalive loop):
            # disconnect, so nothing lingers and a later start() begins clean.
            await self._disconnect_quietly(client)
            self._discard_refused_session(exc)
            if isinstance(exc, TimeoutError) and deadline.expired():
                raise BackendStartError(
                    f"{self.name}: Telegram at {server} did not answer within "
                    f"connect_timeout={limit:g}s (stuck in: {step}); a firewall, a proxy or "
                    "a dead route may be swallowing the connection",
                    backend=self.name,
                ) from None
            if isinstance(exc, errors.FloodError) and step == "the bot login":
                raise self._login_flood(exc) from exc
            if isinstance(exc, errors.RPCError) and step == "the bot login":
                what = "Telegram refused the bot login (check token, api_id and api_hash)"
            elif isinstance(exc, (OSError, TimeoutError)):
                what = f"could not connect to Telegram at {server} (step: {step})"
            elif isinstance(exc, BufferError | EOFError):
                what = (
                    f"the server at {server} does not answer in Telegram's protocol "
                    f"(step: {step}); a proxy or a captive portal may be in the way"
                )
            else:
                what = f"the Telegram client failed at {server} (step: {step})"
            raise BackendStartError(
                f"{self.name}: {what}: {self._scrubbed(exc)}", backend=self.name
            ) from exc
        try:
            self._check_identity(me, token)
        except BackendStartError:
            await self._disconnect_quietly(client)
            if self._store is not None and self._stored_session:
                self._store.discard()  # not this bot's login: never reuse it
            raise
        return me

    def _discard_refused_session(self, exc: BaseException) -> None:
        """Forget a kept login that Telegram no longer knows: the next start logs in anew."""
        store = self._store
        refused = (errors.AuthKeyNotFound, errors.UnauthorizedError, errors.AuthKeyError)
        if store is None or not self._stored_session or not isinstance(exc, refused):
            return
        store.discard()
        self._stored_session = ""
        logger.warning(
            "%s: Telegram refused the kept login (%s): it is discarded, the next start logs "
            "the bot in again",
            self.name,
            type(exc).__name__,
        )

    def _check_identity(self, me: Any, token: str) -> None:
        """Refuse a session that is not a bot's, or not the token's bot."""
        where = (
            f"backends.{self.name}.session_string"
            if self._tg_config.session_string.get_secret_value().strip()
            else "the stored session"
        )
        if me is None:
            raise BackendStartError(
                f"{self.name}: Telegram did not authorize the bot (get_me returned nothing)",
                backend=self.name,
            )
        if not getattr(me, "bot", False):
            raise BackendStartError(
                f"{self.name}: {where} is logged in as a user account (id {me.id}), not a "
                "bot: the backend posts as a bot only; use a bot's session or none",
                backend=self.name,
            )
        bot_id = token.split(":", 1)[0]
        if str(me.id) != bot_id:
            raise BackendStartError(
                f"{self.name}: {where} belongs to bot {me.id}, not to the token's bot "
                f"{bot_id}: use that bot's session, or none",
                backend=self.name,
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
            self._interactions.stop(client)
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
                limit = self._tg_config.connect_timeout
                # A clean disconnect first, even though the link is gone: telethon then
                # saves where the updates stopped, and connect() (catch_up) resumes
                # from there, not from its last periodic save a minute earlier, which
                # would hand the same commands over again.
                await self._disconnect_quietly(client)
                try:
                    async with asyncio.timeout(limit):
                        await client.connect()
                except TimeoutError:
                    # telethon may be half-open now (is_connected() True, no keepalive):
                    # disconnect, so the next try starts from a clean connection.
                    await self._disconnect_quietly(client)
                    # Nothing was sent yet: a connection error, retried like one.
                    raise ConnectionError(
                        f"reconnecting to Telegram at {_server_of(client)} took longer "
                        f"than connect_timeout ({limit:g}s)"
                    ) from None
                except asyncio.CancelledError:
                    await self._disconnect_quietly(client)
                    raise
                logger.info("%s: reconnected to Telegram", self.name)

    def _is_stopping(self) -> bool:
        return self._stopping

    @staticmethod
    def _reconnect_delay(tries: int) -> float:
        """Seconds to wait before reconnect try number ``tries``."""
        return backoff_delay(tries, _RECONNECT_FIRST_DELAY, _RECONNECT_MAX_DELAY)

    async def _watch_connection(self) -> None:
        """Keep a listening client connected: reconnect with backoff after a drop."""
        failures = 0  # reconnect tries since the connection last held for a while
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
                failures = 0
            logger.warning("%s: disconnected from Telegram; reconnecting", self.name)
            while not self._is_stopping():
                failures += 1
                await asyncio.sleep(self._reconnect_delay(failures))
                try:
                    await self._reconnect()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning(
                        "%s: reconnecting failed (next try in %.1fs): %s",
                        self.name,
                        self._reconnect_delay(failures + 1),
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
        chunks, cut = prepare_capped(
            message.message, self._tg_config.parse_mode, self._tg_config.max_parts
        )
        if message.attachments:
            chunks = plan_pieces(chunks, message.attachments, self.name)
        if not chunks:
            raise SendError(
                f"{self.name}: the message text is empty; Telegram cannot send an empty message",
                backend=self.name,
                attempts=0,
                permanent=True,
            )
        outcome: asyncio.Future[DeliveryResult] = asyncio.get_running_loop().create_future()
        job = TrackedJob(message, target, chunks, outcome)
        if cut is not None:
            logger.warning("%s: %s", self.name, cut)
            job.warnings = (cut,)
        return job

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
        result = await asyncio.shield(queued.outcome)  # with the job's warnings
        return with_reference(result, queued)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued message has an outcome; False when ``timeout`` ran out."""
        queue = self._queue
        if queue is None:
            return True
        return await queue.join(timeout)

    async def _send_chunk(self, job: Job, chunk: Chunk) -> None:
        """Send one piece of ``job``: one try, every network step of it bounded.

        A reconnect within ``connect_timeout``; each round trip of a shared limiter
        within its own deadline; the piece's requests (a text, an edit and its
        deletions, or a file's upload and media) within one ``send_timeout`` (plus the
        upload time of a file's bytes).
        """
        client = self._client
        if client is None:
            raise ConnectionError("the backend is stopping")
        if not client.is_connected():
            await self._reconnect()
        limiter = self.send_limiter
        if limiter is not None:  # wait for room in the bot's windows shared by every process
            await limiter.acquire(job.target.key, job.target.grouped)
        # The General topic (id 1) takes plain posts: reply_to=1 would make the message a
        # reply to message 1.
        topic = job.target.topic_id if job.target.topic_id != 1 else None
        try:
            if isinstance(chunk, FileChunk):
                # One deadline for the whole upload (every file part, the media, the
                # album): send_timeout plus the time its bytes may take.
                sent = await send_file_chunk(
                    client, job.target.entity, topic, chunk, self._tg_config.send_timeout
                )
                remember_piece(job, sent[0] if isinstance(sent, list) and sent else sent)
                return
            # One deadline for every request of the piece (an edit and its deletions).
            async with asyncio.timeout(self._tg_config.send_timeout):
                if isinstance(job, TrackedJob) and job.custom:  # an edit, or buttons
                    await self._interactions.send_piece(client, job, chunk)
                    return
                sent = await client.send_message(
                    job.target.entity,
                    chunk.text,
                    reply_to=topic,
                    parse_mode=chunk.parse_mode,
                    formatting_entities=chunk.entities,
                    link_preview=self._tg_config.link_preview,
                )
                remember_piece(job, sent)
        except errors.FloodError as exc:
            forget_flood_memory(client, exc)
            raise
        except TimeoutError:
            # No answer: the link may be dead while telethon thinks it is up. Start the
            # next attempt from a fresh connection.
            await self._disconnect_quietly(client)
            raise
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # Not our cancellation: telethon cancels pending requests when the
            # connection is closed (another send timed out, a reconnect began).
            raise ConnectionError("the connection closed while the message was sent") from None

    def _classify(self, exc: BaseException) -> SendFailure:
        reason = self._scrubbed(exc)
        seconds = getattr(exc, "seconds", None)
        if isinstance(exc, errors.FloodError) and isinstance(seconds, int | float):
            return SendFailure(
                "flood", reason, delay=max(float(seconds), 0.0) * self._limits.time_scale
            )
        if isinstance(exc, TimeoutError):
            # Telegram may have received it: retrying could post the message twice. A
            # file's deadline (send_file_chunk) says how it was reckoned.
            within = (
                str(exc)
                if isinstance(exc, UploadTimeoutError)
                else f"send_timeout={self._tg_config.send_timeout}s"
            )
            return SendFailure(
                "fatal",
                f"no answer within {within}; not retried because Telegram may have received it",
            )
        if _is_server_error(exc):
            return SendFailure("retry", reason)  # 500, -503, "unsuccessful N time(s)"
        if isinstance(exc, errors.RPCError):
            return SendFailure("fatal", reason)  # 400, 401, 403, 404, 406: retrying cannot help
        if isinstance(exc, OSError):
            return SendFailure("retry", reason)  # ConnectionError included: reconnect, retry
        if isinstance(exc, ValueError | TypeError):
            return SendFailure("fatal", reason)  # e.g. an unknown chat or username
        return SendFailure("retry", reason)

    # -- receiving ------------------------------------------------------------------

    def _chat_matches(self, target: ChatTarget, chat_id: Any, username: str | None) -> bool:
        if isinstance(target.entity, int):
            return bool(target.entity == chat_id)
        wanted = target.entity.lstrip("@").lower()
        if chat_id is not None and self._username_ids.get(wanted) == chat_id:
            return True
        if username and wanted == username.lower():
            if chat_id is not None:
                self._username_ids[wanted] = chat_id  # later messages match by id
            return True
        return False

    async def _chat_username(self, event: Any) -> str | None:
        """The username of the event's chat, looked up when telethon did not attach it."""
        chat = getattr(event, "chat", None)
        chat_id = event.chat_id
        if chat is None:
            wanted = any(isinstance(t.entity, str) for t in self._targets.values())
            if (
                not wanted
                or chat_id in self._username_ids.values()
                or chat_id in self._other_chat_ids
            ):
                return None
            # The event's own client: caught-up updates can arrive while start() runs.
            client = getattr(event, "client", None) or self._client
            if client is None:
                return None
            # A message can arrive without its chat (not in telethon's cache): an
            # @username chat would then never match. Look the chat up by id once
            # (event.get_chat() would list dialogs, which bots may not); later
            # messages match by id.
            try:
                async with asyncio.timeout(_SENDER_LOOKUP_TIMEOUT):
                    chat = await client.get_entity(chat_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("%s: could not look the chat up: %s", self.name, self._scrubbed(exc))
                return None
        username = getattr(chat, "username", None)
        if not username:
            self._remember_other_chat(chat_id)
            return None
        if not any(
            isinstance(t.entity, str) and t.entity.lstrip("@").lower() == str(username).lower()
            for t in self._targets.values()
        ):
            self._remember_other_chat(chat_id)
        return str(username)

    def _remember_other_chat(self, chat_id: Any) -> None:
        """A chat that is none of the @username chats: not looked up again."""
        if len(self._other_chat_ids) >= _MAX_OTHER_CHATS:
            self._other_chat_ids.clear()  # bounded memory; a lookup again is harmless
        self._other_chat_ids.add(chat_id)

    @staticmethod
    def _topic_matches(chat: TelegramChatConfig, topic: int | None) -> bool:
        if chat.topic_id is None:
            return True
        # The General topic (id 1) carries no topic header.
        return chat.topic_id == topic or (chat.topic_id == 1 and topic is None)

    def _authorize(
        self, event: Any, topic: int | None, username: str | None = None
    ) -> tuple[str | None, str]:
        """The label of the chat config that accepts this message, or None and why not."""
        chats = self._tg_config.chats
        candidates = [
            label
            for label, target in self._targets.items()
            if self._chat_matches(target, event.chat_id, username)
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
            label, reason = self._authorize(event, topic, await self._chat_username(event))
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
            age = _age_of(message)
            if age is not None and age > self._tg_config.max_command_age:
                # Caught up after a downtime: a /restart sent hours ago must not fire now.
                logger.info(
                    "%s: dropped message %s in chat %s: sent %.0f s ago, older than "
                    "max_command_age=%gs",
                    self.name,
                    event.id,
                    event.chat_id,
                    age,
                    self._tg_config.max_command_age,
                )
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
            self._interactions.offer_reply(label, incoming)  # the answer to a question?
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


def _age_of(message: Any) -> float | None:
    """Seconds since ``message`` was sent (None when it carries no date)."""
    date = getattr(message, "date", None)
    if not isinstance(date, datetime):
        return None
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)  # telethon's dates are UTC
    return (datetime.now(UTC) - date).total_seconds()


def _restrict_permissions(session: str) -> None:
    """Make a file session (it holds the login) readable by its owner only."""
    path = Path(session if session.endswith(".session") else f"{session}.session")
    try:
        if path.exists():
            path.chmod(0o600)
    except OSError:
        pass
