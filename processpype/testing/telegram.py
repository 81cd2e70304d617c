"""``FakeTelegramClient``: stands in for telethon's ``TelegramClient`` in tests.

It covers what a bot uses: ``start(bot_token=...)``, ``connect``/``disconnect``/
``is_connected``, ``get_me``, ``send_message`` and ``edit_message`` (telethon's
signatures), ``add_event_handler``/``remove_event_handler`` with ``events.NewMessage``
and ``events.CallbackQuery``, and ``run_until_disconnected``. It answers as Telegram
would, with telethon's own error classes: ``MessageTooLongError`` over 4096 UTF-16
units (after parsing), ``ValueError`` for empty text and for digit-string chats,
``FloodWaitError`` when a rate limit is broken (``enforce_rate_limits=True``) or when
scripted (``fail_next``).
``send_file`` (and ``send_message(file=...)``, which telethon hands over to it) takes
files, photos and albums (``processpype.testing._telegram_files`` says what it
reproduces and what not), recorded in ``sent_files``.
Incoming messages (``inject_message``) are real telethon ``NewMessage`` events.
Sent messages keep their inline buttons; ``edit_message`` and ``delete_messages``
work on them as on Telegram, and ``press_button`` delivers a press as telethon's own
``CallbackQuery`` event (the bot's ``event.answer`` lands in ``callback_answers``).
A sent file is a message too: ``edit_message`` changes its caption (Telegram's caption
limit applies). Not reproduced: the 64-byte limit on button data, the deadline for
answering a press, the limit on how old a message may be to be edited, and replacing a
message's media (``edit_message(file=...)`` raises ``NotImplementedError``).

Point every ``TelegramCommunicator`` at one fake with ``set_default_client_factory(
fake.as_client_factory())``, or pass ``client_factory=fake.as_client_factory()``. The
fake is safe to read and drive from a test thread while a Notifier's loop sends.

Where the backend depends on telethon's own logic, the fake runs the same logic
(``_call``, as telethon's ``UserMethods._call`` does, keyed by the telethon request type
of each method: ``SendMessageRequest``, ``SendMediaRequest`` for one file,
``SendMultiMediaRequest`` per album of up to 10, ``EditMessageRequest``,
``DeleteMessagesRequest`` (``channels.`` for supergroups), ``SetBotCallbackAnswerRequest``,
``ImportBotAuthorization``):

- **Flood memory.** A ``FloodWaitError`` (not ``SlowModeWaitError``) is remembered per
  request type in ``_flood_waited_requests[Request.CONSTRUCTOR_ID]``; every later
  request of that type, to any chat, fails locally with ``FloodWaitError`` until the
  wait ends, except that a wait with 3 s or less left is forgotten. Waits up to
  ``flood_sleep_threshold`` are slept through, as telethon does. A client built with
  ``receive_updates=False`` wraps each request in ``InvokeWithoutUpdatesRequest``:
  telethon files the wait under the wrapper's id (the error's ``.request`` is the
  wrapper), which it never checks, so such a client has no flood memory; nor has the
  fake then.
- **Server errors** (``ServerError``, ``TimedOutError``, ``RpcCallFailError``, ...) are
  repeated ``request_retries`` times after ``internal_retry_delay`` (telethon: 2 s), each
  repeat taking the next scripted failure; then the last error is raised with
  ``raise_last_call_error=True``, else ``ValueError("Request was unsuccessful N
  time(s)")``. Both flags are read from the factory's keyword arguments.
- **Silent server** (``silent = True``): ``connect``, ``start`` and requests hang until
  cancelled. With an auth key in the session, ``connect`` hangs after the link is up, so
  a cancelled connect leaves ``is_connected()`` True, as telethon's does.
- **Logins.** A session carrying an auth key the fake issued is already logged in (no
  new login); otherwise ``start(bot_token=)`` runs ``ImportBotAuthorization`` (counted
  in ``logins``, scriptable with ``fail_next_login``) and stores a new auth key in the
  session (``StringSession.save()`` then works). A session of another account is kept,
  with telethon's warning. ``session_string_for`` makes such sessions.

Differences that remain: no network, no MTProto, no update gaps, no DC migrations, no
entity cache beyond injected messages (usernames are accepted without resolving),
file sessions (paths) are not written to, and ``catch_up`` is recorded, not acted on.
Uploads are not requests of their own: telethon sends each file in 512 KiB
``SaveFilePartRequest`` parts (and ``UploadMediaRequest`` per album photo) before the
media request, each with its own flood memory and retries; the fake reads the file at
once and runs only the media request. A scripted failure (``fail_next``) is taken by
the next request to that chat of any kind: a message, a file, an edit or a deletion.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import re
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from telethon import errors, events, utils
from telethon._updates import EntityCache
from telethon.client.buttons import ButtonMethods
from telethon.crypto import AuthKey
from telethon.tl import functions, types
from telethon.tl.tlobject import TLRequest

from processpype.communications.backends._telegram_limits import (
    SlidingWindow,
    TelegramRateLimits,
    is_grouped,
)
from processpype.communications.backends._telegram_text import MAX_MESSAGE_UNITS, utf16_len
from processpype.config.models import TelegramCommunicatorConfig
from processpype.testing._faults import scripted
from processpype.testing._telegram_files import FileSending, SentFile, caption_text
from processpype.testing._telegram_files import chat_key as _chat_key
from processpype.testing._waiting import Signal, Until, at_least, resolve, running_loop

__all__ = [
    "CallbackAnswer",
    "EditedMessage",
    "FailedSend",
    "FakeTelegramClient",
    "InlineButton",
    "SentFile",
    "SentMessage",
]

logger = logging.getLogger("processpype.testing.telegram")

_BOT_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+")
_DEFAULT_MEMBER_ID = 1000
EventCallback = Callable[[Any], Awaitable[Any]]
_T = TypeVar("_T")
# The errors telethon's _call repeats itself (client/users.py).
_SERVER_ERRORS: tuple[type[BaseException], ...] = (
    errors.ServerError,
    errors.RpcCallFailError,
    errors.RpcMcgetFailError,
    errors.InterdcCallErrorError,
    errors.TimedOutError,
    errors.InterdcCallRichErrorError,
)
_FLOOD_ERRORS: tuple[type[BaseException], ...] = (
    errors.FloodWaitError,
    errors.FloodPremiumWaitError,
    errors.SlowModeWaitError,
    errors.FloodTestPhoneWaitError,
)


@dataclass(frozen=True)
class SentMessage:
    """One message the fake accepted, as ``send_message`` was called.

    ``text`` is the text argument (markup included when ``parse_mode`` parsed it);
    ``entities`` the ``formatting_entities`` argument; ``time`` is ``time.monotonic()``
    when it arrived.
    """

    chat: int | str
    text: str
    reply_to: int | None
    parse_mode: str | None
    time: float
    entities: list[Any] | None = None
    message_id: int = 0
    buttons: tuple[tuple[InlineButton, ...], ...] = ()
    """The inline keyboard sent with it (rows of buttons); edits may change it."""
    link_preview: bool = True
    media: bool = False
    """True for a message ``send_file`` posted: ``text`` is its caption, and an edit
    changes the caption only (up to 1,024 UTF-16 units; empty removes it)."""


class InlineButton(NamedTuple):
    """One inline button of a sent message: its label and the data a press sends back."""

    text: str
    data: bytes


class EditedMessage(NamedTuple):
    """One ``edit_message`` the fake accepted: the chat, the message, its new state."""

    chat: int | str
    message_id: int
    text: str
    buttons: tuple[tuple[InlineButton, ...], ...]
    time: float


class CallbackAnswer(NamedTuple):
    """The bot's answer to a button press (``SetBotCallbackAnswerRequest``)."""

    query_id: int
    message: str | None
    alert: bool


class FailedSend(NamedTuple):
    """One call that raised (``send_message``, ``send_file``, ``edit_message``,
    ``delete_messages``): the chat, the error, and when."""

    chat: Any
    error: BaseException
    time: float


def _check_api(api_id: Any, api_hash: Any) -> None:
    if not api_id or not api_hash:
        # telethon's own check and message (TelegramBaseClient.__init__)
        raise ValueError(
            "Your API ID or Hash cannot be empty or None. "
            "Refer to telethon.rtfd.io for more information."
        )


class FakeTelegramClient(FileSending):
    """In-memory stand-in for telethon's ``TelegramClient`` (bot accounts).

    ``send_file`` (from ``FileSending``) records files, photos and albums in
    ``sent_files``, apart from the text messages in ``sent``.

    ``enforce_rate_limits`` makes it answer ``FloodWaitError`` when a send breaks
    ``rate_limits`` (Telegram's documented limits by default) by more than
    ``rate_limit_tolerance`` seconds; ``latency`` delays every message, file and edit.
    """

    def __init__(
        self,
        session: Any = None,
        api_id: int | str = 1,
        api_hash: str = "fake-hash",
        *,
        enforce_rate_limits: bool = False,
        rate_limits: TelegramRateLimits | None = None,
        rate_limit_tolerance: float = 0.002,
        latency: float = 0.0,
        **kwargs: Any,
    ) -> None:
        _check_api(api_id, api_hash)
        self.session = session
        self.api_id = int(api_id)
        self._api_hash = api_hash
        self.enforce_rate_limits = enforce_rate_limits
        self.rate_limits = rate_limits or TelegramRateLimits()
        self.rate_limit_tolerance = rate_limit_tolerance
        self.latency = latency
        self.connect_latency = 0.0
        """Seconds every ``connect()`` takes (a network that hangs, when large)."""
        self.flood_sleep_threshold: float = kwargs.pop("flood_sleep_threshold", 60)
        self.request_retries: int = kwargs.pop("request_retries", 5)
        self.raise_last_call_error: bool = kwargs.pop("raise_last_call_error", False)
        self.client_options: dict[str, Any] = dict(kwargs)
        """The keyword arguments of the last client built (``receive_updates``, ...)."""
        self.internal_retry_delay = 2.0
        """Seconds telethon sleeps before repeating a request after a server error."""
        self.silent = False
        """True: connect, start and requests hang until cancelled (a black-holed link)."""
        self.logins = 0
        """How many bot logins (``ImportBotAuthorization``) succeeded."""
        self._flood_waited_requests: dict[int, float] = {}
        self._login_failures: deque[BaseException] = deque()
        # auth key -> the account it is logged in as (what Telegram's servers remember)
        self._authorizations: dict[bytes, types.User] = {}
        self.parse_mode: str | None = "md"  # telethon's default: markdown
        self.sent: list[SentMessage] = []
        """Every message accepted, in arrival order."""
        self.sent_files: list[SentFile] = []
        """Every file accepted by ``send_file``, in arrival order (albums file by file)."""
        self.errors: list[FailedSend] = []
        """Every ``send_message`` that raised: (chat, error, time)."""
        self.flood_waits = 0
        """How many ``FloodWaitError`` the enforced rate limits answered."""
        self.sessions: list[Any] = []
        """The session given to each client the factory built."""
        self.start_count = 0
        self.connect_count = 0
        self.handler_errors: list[BaseException] = []
        """Exceptions raised by event handlers (logged and swallowed, as telethon does)."""
        self._signal = Signal()
        self._lock = self._signal.condition
        self._failures: deque[tuple[BaseException, int | str | None]] = deque()
        self._connect_failures: deque[BaseException] = deque()
        # (builder, callback, loop the handler was added on): each backend sharing this
        # fake may run on its own loop, and its handler runs there.
        self._handlers: list[tuple[Any, EventCallback, asyncio.AbstractEventLoop | None]] = []
        self._connected = False
        self._users = 0
        self._me: types.User | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._disconnect_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._ids = itertools.count(1)
        self._pts = itertools.count(1)
        self._mb_entity_cache = EntityCache()
        self._entities: dict[int, Any] = {}
        self._chat_windows: dict[int | str, list[SlidingWindow]] = {}
        self._global_window = self.rate_limits.new_global_window()
        self._blocked_until: dict[int | str, float] = {}
        self._dispatches: set[asyncio.Task[None]] = set()
        # (chat key, message id) -> (the message as it reads now, its parsed text)
        self._current: dict[tuple[int | str, int], tuple[SentMessage, str]] = {}
        self._queries = itertools.count(7_000_001)
        self.edits: list[EditedMessage] = []
        """Every edit accepted, in arrival order."""
        self.deleted: list[tuple[int | str, int]] = []
        """(chat, message id) of every message deleted with ``delete_messages``."""
        self.callback_answers: list[CallbackAnswer] = []
        """Every answer the bot gave to a button press, in order."""

    def __repr__(self) -> str:
        return (
            f"FakeTelegramClient(connected={self._connected}, sent={len(self.sent)}, "
            f"enforce_rate_limits={self.enforce_rate_limits})"
        )

    # -- factory --------------------------------------------------------------------

    def as_client_factory(self) -> Callable[..., FakeTelegramClient]:
        """A ``client_factory`` that checks its arguments like telethon and returns this fake."""

        def factory(
            session: Any, api_id: int | str, api_hash: str, **kwargs: Any
        ) -> FakeTelegramClient:
            _check_api(api_id, api_hash)
            with self._lock:
                self.sessions.append(session)
                self.session = session
            if "flood_sleep_threshold" in kwargs:
                self.flood_sleep_threshold = kwargs["flood_sleep_threshold"]
            self.request_retries = kwargs.get("request_retries", 5)
            self.raise_last_call_error = kwargs.get("raise_last_call_error", False)
            self.client_options = dict(kwargs)
            return self

        return factory

    @staticmethod
    def telegram_config(**overrides: Any) -> TelegramCommunicatorConfig:
        """A valid ``TelegramCommunicatorConfig`` for tests (one ``default`` group chat).

        Pass any config field to change it, e.g. ``chats={...}`` or
        ``listen_to_commands=True``. ``persist_session`` is off, so that a test never
        writes a login into the user's data directory.
        """
        values: dict[str, Any] = {
            "api_id": 12345,
            "api_hash": "0123456789abcdef0123456789abcdef",
            "token": "123456:TEST-token_for-the-fake",
            "chats": {"default": {"chat_id": "-1001234567890"}},
            "persist_session": False,
        }
        values.update(overrides)
        return TelegramCommunicatorConfig.model_validate(values)

    # -- scripting ------------------------------------------------------------------

    def fail_next(
        self, exc: BaseException, *, chat: int | str | None = None, count: int = 1
    ) -> None:
        """Make the next ``count`` sends (to ``chat``, or to any chat) raise ``exc``."""
        with self._lock:
            for _ in range(count):
                self._failures.append((exc, _chat_key(chat) if chat is not None else None))

    def fail_next_login(self, exc: BaseException, *, count: int = 1) -> None:
        """Make the next ``count`` bot logins raise ``exc`` (e.g. ``FloodWaitError``)."""
        with self._lock:
            self._login_failures.extend([exc] * count)

    def session_string_for(self, user_id: int, *, bot: bool = True) -> str:
        """A ``StringSession`` string already logged in as ``user_id`` (a bot or a user)."""
        from telethon.sessions import StringSession

        session = StringSession()
        self._authorize(session, self._account(user_id, bot=bot))
        return str(session.save())

    def fail_next_connect(self, exc: BaseException | None = None, *, count: int = 1) -> None:
        """Make the next ``count`` connection attempts raise ``exc`` (a ``ConnectionError``)."""
        with self._lock:
            self._connect_failures.extend(scripted(exc, count, "scripted connection failure"))

    def drop_connection(self) -> None:
        """Lose the connection, as a network failure would (callable from any thread)."""
        self._set_disconnected()

    def clear(self) -> None:
        """Forget sent messages, errors and scripted failures."""
        with self._lock:
            self.sent.clear()
            self.sent_files.clear()
            self.errors.clear()
            self._failures.clear()
            self._login_failures.clear()
            self._flood_waited_requests.clear()
            self.flood_waits = 0
            self.edits.clear()
            self.deleted.clear()
            self.callback_answers.clear()

    # -- reading --------------------------------------------------------------------

    @property
    def texts(self) -> list[str]:
        """The text of every sent message, in order."""
        with self._lock:
            return [m.text for m in self.sent]

    def sent_to(self, chat: int | str) -> list[SentMessage]:
        """The messages sent to ``chat``, in order."""
        key = _chat_key(chat)
        with self._lock:
            return [m for m in self.sent if _chat_key(m.chat) == key]

    def _describe_sent(self) -> str:
        got = [(m.chat, m.text[:40]) for m in self.sent[:10]]
        return f"{len(self.sent)} arrived: {got!r}"

    def wait_for_sent(self, count: int, timeout: float = 5.0) -> list[SentMessage]:
        """Block until ``count`` messages were sent; return them all.

        Raises ``TimeoutError`` saying what did arrive. From the sending loop's own
        thread, use ``await wait_for_sent_async(...)`` instead.
        """
        self._refuse_on_own_loop("wait_for_sent", "wait_for_sent_async")
        return self._signal.block(self._until_sent(count, timeout), timeout)

    async def wait_for_sent_async(self, count: int, timeout: float = 5.0) -> list[SentMessage]:
        """``wait_for_sent`` without blocking the event loop."""
        return await self._signal.wait(self._until_sent(count, timeout), timeout)

    def _until_sent(self, count: int, timeout: float) -> Until[list[SentMessage]]:
        return at_least(
            self.sent,
            count,
            lambda: f"expected {count} sent messages within {timeout}s, {self._describe_sent()}",
        )

    async def wait_for_errors_async(self, count: int, timeout: float = 5.0) -> list[FailedSend]:
        """Wait until ``count`` sends have raised; return every ``FailedSend``."""
        until = at_least(
            self.errors,
            count,
            lambda: f"expected {count} failed sends within {timeout}s, got {len(self.errors)}",
        )
        return await self._signal.wait(until, timeout)

    def wait_for_connected(self, timeout: float = 5.0) -> None:
        """Block until the fake is connected (e.g. after a reconnect)."""
        self._refuse_on_own_loop("wait_for_connected", "wait_for_connected_async")
        self._signal.block(self._until_connected(timeout), timeout)

    async def wait_for_connected_async(self, timeout: float = 5.0) -> None:
        """``wait_for_connected`` without blocking the event loop."""
        await self._signal.wait(self._until_connected(timeout), timeout)

    def _until_connected(self, timeout: float) -> Until[None]:
        return Until(
            lambda: self._connected, lambda: None, lambda: f"not connected within {timeout}s"
        )

    def _refuse_on_own_loop(self, name: str, alternative: str) -> None:
        running = running_loop()
        if running is not None and running is self._loop:
            raise RuntimeError(
                f"{name}() would block the event loop this fake sends on: "
                f"use 'await {alternative}(...)'"
            )

    # -- connection (telethon API) ----------------------------------------------------

    async def connect(self) -> None:
        """Connect (raises a failure scripted with ``fail_next_connect``)."""
        with self._lock:
            self.connect_count += 1
            failure = self._connect_failures.popleft() if self._connect_failures else None
        if failure is not None:
            raise failure
        if self.connect_latency:
            await asyncio.sleep(self.connect_latency)
        loop = asyncio.get_running_loop()
        if self.silent:
            if getattr(self.session, "auth_key", None):
                # telethon's sender is connected before InitConnection goes unanswered.
                self._loop = loop
                self._connected = True
                self._signal.notify()
            await _hang()
        if self._loop is not None and self._loop is not loop and self._connected:
            # telethon refuses to change loops while connected, too
            raise RuntimeError("The asyncio event loop must not change after connection")
        self._loop = loop
        if not self._connected:
            self._connected = True
            self._signal.notify()

    def is_connected(self) -> bool:
        """True while connected."""
        return self._connected

    @property
    def disconnected(self) -> asyncio.Future[None]:
        """A future (of the running loop) resolved when the connection ends."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            # Checked under the lock: a drop_connection() from another thread between
            # the check and the append would leave this future unresolved for ever.
            if self._connected:
                self._disconnect_waiters.append((loop, future))
                return future
        future.set_result(None)
        return future

    async def disconnect(self) -> None:
        """Disconnect; when several backends share this fake, the last one disconnects it."""
        if not self._connected:
            return  # nothing to close (the link dropped): no backend left it
        if self._users > 0:
            self._users -= 1
        if self._users == 0 and self._connected:
            self._set_disconnected()

    def _set_disconnected(self) -> None:
        with self._lock:
            self._connected = False
            waiters, self._disconnect_waiters = self._disconnect_waiters, []
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(resolve, future)
        self._signal.notify()

    async def start(
        self,
        phone: Any = lambda: "",
        password: Any = None,
        *,
        bot_token: str | None = None,
        **kwargs: Any,
    ) -> FakeTelegramClient:
        """Connect and log the bot in with ``bot_token``, as telethon's ``start`` does."""
        if not phone and not bot_token:
            raise ValueError("No phone number or bot token provided.")
        if phone and bot_token and not callable(phone):
            raise ValueError(
                "Both a phone and a bot token provided, must only provide one of either"
            )
        if not bot_token:
            # telethon would now prompt for a phone number on stdin and hang a script.
            raise RuntimeError(
                "FakeTelegramClient logs in bots only; without bot_token telethon would "
                "start an interactive phone login"
            )
        if not self._connected:
            await self.connect()
        if self.silent:
            await _hang()
        me: Any = self._authorized_as(self.session)
        if me is not None:
            if bot_token[: bot_token.find(":")] != str(me.id):
                warnings.warn(  # telethon's own warning, and it keeps the session
                    "the session already had an authorized user so it did not login to "
                    "the bot account using the provided bot_token; if you were expecting "
                    "a different user, check whether you are accidentally reusing an "
                    "existing session",
                    stacklevel=2,
                )
        else:
            request = functions.auth.ImportBotAuthorizationRequest(
                flags=0, api_id=self.api_id, api_hash=self._api_hash, bot_auth_token=bot_token
            )
            me = await self._call(request, lambda: self._log_bot_in(bot_token))
        self._me = me
        self._mb_entity_cache.set_self_user(me.id, bool(me.bot), me.access_hash)
        self._users += 1
        self.start_count += 1
        return self

    async def _log_bot_in(self, bot_token: str) -> types.User:
        with self._lock:
            failure = self._login_failures.popleft() if self._login_failures else None
        if failure is not None:
            raise failure
        if not _BOT_TOKEN.fullmatch(bot_token):
            raise errors.AccessTokenInvalidError(request=None)
        me = self._account(int(bot_token.split(":", 1)[0]), bot=True)
        self._authorize(self.session, me)
        with self._lock:
            self.logins += 1
        return me

    @staticmethod
    def _account(user_id: int, *, bot: bool) -> types.User:
        return types.User(
            id=user_id,
            is_self=True,
            bot=bot,
            first_name="Fake bot" if bot else "Fake user",
            username="fake_bot" if bot else "fake_user",
            access_hash=user_id * 7 + 1,
        )

    def _authorize(self, session: Any, me: types.User) -> None:
        """Give ``session`` a new auth key logged in as ``me``, as a login does."""
        if not hasattr(session, "auth_key"):
            return  # a file path: the fake does not write SQLite sessions
        # telethon makes the auth key when connecting a session without one; a login
        # binds the account to that key.
        key = session.auth_key or AuthKey(os.urandom(256))
        if not getattr(session, "server_address", None):
            session.set_dc(2, "127.0.0.1", 443)  # loopback: never a real Telegram address
        session.auth_key = key
        with self._lock:
            self._authorizations[key.key] = me

    def _authorized_as(self, session: Any) -> types.User | None:
        key = getattr(getattr(session, "auth_key", None), "key", None)
        with self._lock:
            return self._authorizations.get(key) if key is not None else None

    async def _call(self, request: TLRequest, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run one request as telethon's ``_call`` does: flood memory, internal retries.

        ``request`` names the request type (its ``CONSTRUCTOR_ID`` keys the flood
        memory, and flood errors carry it as ``.request``); ``attempt`` answers it
        once, as Telegram would, and may raise telethon's errors. Any instance of the
        telethon request a method sends will do (its fields are not read): a new
        method joins with ``await self._call(functions.messages.EditMessageRequest(
        peer=types.InputPeerEmpty(), id=0), lambda: ...)``.
        """
        scale = self.rate_limits.time_scale
        constructor = request.CONSTRUCTOR_ID
        # A client built with receive_updates=False wraps each request in
        # InvokeWithoutUpdatesRequest: telethon then files a flood wait under the
        # wrapper's id (and the error names the wrapper), which its check before a
        # request never looks up. Quirk reproduced: such a client has no flood memory.
        sent: TLRequest = request
        if self.client_options.get("receive_updates") is False:
            sent = functions.InvokeWithoutUpdatesRequest(query=request)
        due = self._flood_waited_requests.get(constructor)
        if due is not None:
            diff = round((due - time.time()) / scale)
            if diff <= 3:  # telethon: flood waits below 3 seconds are "ignored"
                self._flood_waited_requests.pop(constructor, None)
            elif diff <= self.flood_sleep_threshold:
                await asyncio.sleep(diff * scale)
                self._flood_waited_requests.pop(constructor, None)
            else:
                raise errors.FloodWaitError(request=request, capture=diff)
        last_error: BaseException | None = None
        tries = 0
        while tries <= max(self.request_retries, 0):
            tries += 1
            if self.silent:
                await _hang()
            try:
                return await attempt()
            except _SERVER_ERRORS as exc:
                last_error = exc
                await asyncio.sleep(self.internal_retry_delay)
            except _FLOOD_ERRORS as exc:
                last_error = exc
                if getattr(exc, "request", None) is None:
                    exc.request = sent  # type: ignore[attr-defined]
                seconds = int(getattr(exc, "seconds", 0))
                if not isinstance(exc, errors.SlowModeWaitError):
                    self._flood_waited_requests[sent.CONSTRUCTOR_ID] = time.time() + seconds * scale
                if seconds == 0:
                    seconds = exc.seconds = 1  # type: ignore[attr-defined]
                if seconds <= self.flood_sleep_threshold:
                    await asyncio.sleep(seconds * scale)
                else:
                    raise
        if self.raise_last_call_error and last_error is not None:
            raise last_error
        raise ValueError(f"Request was unsuccessful {tries} time(s)")

    async def get_me(self, input_peer: bool = False) -> Any:
        """The bot's own ``User`` (``InputPeerUser`` with ``input_peer``), None before login."""
        if self.silent:
            await _hang()
        if self._me is None:
            return None
        if input_peer:
            return utils.get_input_peer(self._me)
        return self._me

    @property
    def _self_id(self) -> int | None:
        return self._me.id if self._me is not None else None

    async def run_until_disconnected(self) -> None:
        """Wait until the connection ends (raises ``ConnectionError`` when not connected)."""
        self._check_connected()
        loop = asyncio.get_running_loop()
        future = self.disconnected
        try:
            await future
        finally:
            with self._lock:
                if (loop, future) in self._disconnect_waiters:
                    self._disconnect_waiters.remove((loop, future))

    # -- entities (enough for event builders and get_sender) --------------------------

    async def get_input_entity(self, peer: Any) -> Any:
        """The input peer of a known entity (from injected messages)."""
        entity = await self.get_entity(peer)
        return utils.get_input_peer(entity)

    async def get_entity(self, entity: Any) -> Any:
        """A known entity by marked id or input peer; ``ValueError`` otherwise."""
        try:
            key = utils.get_peer_id(entity)
        except TypeError:
            key = entity
        if key in self._entities:
            return self._entities[key]
        raise ValueError(f'Could not find the input entity for "{entity}"')

    # -- events (telethon API) ----------------------------------------------------------

    def add_event_handler(self, callback: EventCallback, event: Any = None) -> None:
        """Register ``callback`` for ``event`` (a builder instance or class)."""
        if isinstance(event, type):
            event = event()
        elif not event:
            event = events.Raw()
        self._handlers.append((event, callback, running_loop()))

    def remove_event_handler(self, callback: EventCallback, event: Any = None) -> int:
        """Unregister ``callback`` (for ``event`` only, if given); return how many."""
        if event is not None and not isinstance(event, type):
            event = type(event)
        kept = [
            (builder, handler, loop)
            for builder, handler, loop in self._handlers
            if not (handler == callback and (event is None or isinstance(builder, event)))
        ]
        removed = len(self._handlers) - len(kept)
        self._handlers = kept
        return removed

    def list_event_handlers(self) -> list[tuple[EventCallback, Any]]:
        """(callback, event builder) pairs, like telethon."""
        return [(callback, builder) for builder, callback, _ in self._handlers]

    def on(self, event: Any) -> Callable[[EventCallback], EventCallback]:
        """Decorator form of ``add_event_handler``."""

        def decorator(callback: EventCallback) -> EventCallback:
            self.add_event_handler(callback, event)
            return callback

        return decorator

    # -- sending (telethon API) -----------------------------------------------------------

    async def send_message(
        self,
        entity: Any,
        message: Any = "",
        *,
        reply_to: Any = None,
        attributes: Any = None,
        parse_mode: Any = (),
        formatting_entities: list[Any] | None = None,
        link_preview: bool = True,
        file: Any = None,
        thumb: Any = None,
        force_document: bool = False,
        clear_draft: bool = False,
        buttons: Any = None,
        silent: bool | None = None,
        background: bool | None = None,
        supports_streaming: bool = False,
        schedule: Any = None,
        comment_to: Any = None,
        nosound_video: bool | None = None,
        send_as: Any = None,
        message_effect_id: int | None = None,
    ) -> Any:
        """Accept a text message as Telegram would, or raise telethon's error for it.

        With ``file``, telethon sends the message as the file's caption through
        ``send_file``; so does the fake (recorded in ``sent_files``).
        """
        if file is not None:
            if isinstance(message, types.Message):
                formatting_entities = formatting_entities or message.entities
                message = message.message
            return await self.send_file(
                entity,
                file,
                caption=message,
                reply_to=reply_to,
                attributes=attributes,
                parse_mode=parse_mode,
                force_document=force_document,
                formatting_entities=formatting_entities,
                buttons=buttons,
                silent=silent,
            )
        request = functions.messages.SendMessageRequest(
            peer=types.InputPeerEmpty(), message=str(message)
        )
        try:
            return await self._call(
                request,
                lambda: self._send(
                    entity,
                    message,
                    reply_to,
                    parse_mode,
                    formatting_entities,
                    file,
                    link_preview,
                    buttons=buttons,
                ),
            )
        except Exception as exc:
            self._record_failure(entity, exc)
            raise

    async def _send(
        self,
        entity: Any,
        message: Any,
        reply_to: Any,
        parse_mode: Any,
        formatting_entities: list[Any] | None,
        file: Any,
        link_preview: bool = True,
        *,
        buttons: Any = None,
    ) -> Any:
        now = time.monotonic()  # when the request "reaches Telegram"
        self._check_connected()
        self._check_entity(entity)
        key = _chat_key(entity)
        self._raise_scripted(key)
        text = self._parsed_text(str(message), parse_mode, formatting_entities)
        markup = ButtonMethods.build_reply_markup(buttons)
        if self.enforce_rate_limits:
            now = self._check_rate_limits(key, entity)
        message_id = next(self._ids)
        record = SentMessage(
            chat=entity,
            text=str(message),
            reply_to=utils.get_message_id(reply_to),
            parse_mode=self.parse_mode if parse_mode == () else parse_mode,
            time=now,
            entities=formatting_entities,
            message_id=message_id,
            buttons=_inline_rows(markup),
            link_preview=link_preview,
        )
        with self._lock:
            self.sent.append(record)
            self._current[(key, message_id)] = (record, text)
        self._signal.notify()
        await asyncio.sleep(self.latency)
        return types.Message(
            id=message_id,
            peer_id=self._peer(entity),
            date=datetime.now(UTC),
            message=text,
            out=True,
            entities=formatting_entities,
            reply_markup=markup,
            reply_to=(
                types.MessageReplyHeader(reply_to_msg_id=record.reply_to)
                if record.reply_to is not None
                else None
            ),
        )

    def _record_failure(self, entity: Any, exc: BaseException) -> None:
        """Keep a call that raised in ``errors`` (and wake whoever waits for one)."""
        with self._lock:
            self.errors.append(FailedSend(entity, exc, time.monotonic()))
        self._signal.notify()

    def _check_connected(self) -> None:
        if not self._connected:
            raise ConnectionError("Cannot send requests while disconnected")

    def _raise_scripted(self, key: int | str) -> None:
        """Raise the first failure ``fail_next`` scripted for chat ``key`` (or any chat)."""
        with self._lock:
            for index, (exc, chat) in enumerate(self._failures):
                if chat is None or chat == key:
                    del self._failures[index]
                    raise exc

    @staticmethod
    def _check_entity(entity: Any) -> None:
        if isinstance(entity, bool) or entity is None:
            raise TypeError(f"Cannot cast {type(entity).__name__} to any kind of Peer.")
        if isinstance(entity, int):
            return
        if isinstance(entity, str):
            if utils.parse_phone(entity):
                raise ValueError(
                    "Cannot get entity by phone number as a bot "
                    "(try using integer IDs, not strings)"
                )
            if entity.lower() in ("me", "self"):
                return
            username, _ = utils.parse_username(entity)
            if not username:
                raise ValueError(f'Cannot find any entity corresponding to "{entity}"')
            return
        utils.get_peer_id(entity)  # TypeError for anything telethon cannot use

    def _parsed_text(
        self, message: str, parse_mode: Any, formatting_entities: list[Any] | None
    ) -> str:
        text = message
        if formatting_entities is None:
            mode = utils.sanitize_parse_mode(self.parse_mode if parse_mode == () else parse_mode)
            if mode:
                text, parsed = mode.parse(message)
                if message and not text and not parsed:
                    raise ValueError("Failed to parse message")
        if not text:
            raise ValueError("The message cannot be empty unless a file is provided")
        if not text.strip():
            raise errors.MessageEmptyError(request=None)
        if utf16_len(text) > MAX_MESSAGE_UNITS:
            raise errors.MessageTooLongError(request=None)
        return str(text)

    def _check_rate_limits(self, key: int | str, entity: Any) -> float:
        """Count a send against the windows, or raise ``FloodWaitError``; return its time.

        Checked and counted in one step under the lock: backends on several threads'
        loops may share this fake, and two of them must not both pass a full window.
        """
        with self._lock:
            now = time.monotonic()
            self._count_send(key, entity, now)
            return now

    def _count_send(self, key: int | str, entity: Any, now: float) -> None:
        limits = self.rate_limits
        tolerance = self.rate_limit_tolerance
        blocked = self._blocked_until.get(key, -math.inf)
        if blocked > now + tolerance:
            self._flood(math.ceil((blocked - now) / limits.time_scale))
        windows = self._chat_windows.get(key)
        if windows is None:
            grouped = is_grouped(entity) if isinstance(entity, int | str) else True
            windows = self._chat_windows[key] = limits.chat_windows(grouped)
        chat_ready = max(w.ready_at() for w in windows)
        if chat_ready > now + tolerance:
            seconds = max(1, math.ceil((chat_ready - now) / limits.time_scale))
            self._blocked_until[key] = now + seconds * limits.time_scale
            self._flood(seconds)
        global_ready = self._global_window.ready_at()
        if global_ready > now + tolerance:
            self._flood(max(1, math.ceil((global_ready - now) / limits.time_scale)))
        for window in windows:
            window.record(now)
        self._global_window.record(now)

    def _flood(self, seconds: int) -> None:
        with self._lock:
            self.flood_waits += 1
        raise errors.FloodWaitError(request=None, capture=seconds)

    def _peer(self, entity: Any) -> Any:
        if isinstance(entity, int):
            peer_id, peer_type = utils.resolve_id(entity)
            return peer_type(peer_id)
        if isinstance(entity, str):
            return types.PeerUser(abs(hash(entity.lower())) % 10**9)
        return utils.get_peer(entity)

    # -- incoming -------------------------------------------------------------------------

    def inject_message(
        self,
        chat_id: int,
        text: str,
        *,
        sender_id: int | None = None,
        sender_name: str = "Test User",
        topic_id: int | None = None,
        reply_to: int | None = None,
        chat_username: str | None = None,
        timeout: float = 5.0,
        date: datetime | None = None,
        chat_attached: bool = True,
    ) -> Any:
        """Deliver an incoming message to the ``NewMessage`` handlers; return the message.

        ``chat_id`` is a marked id (``-100...`` supergroups, negative small groups,
        positive private chats); ``sender_id`` defaults to the chat in a private chat.
        ``topic_id`` posts into a forum topic, ``reply_to`` replies to a message (inside
        the topic, when both are given). ``date`` backdates the message (a command
        caught up after a downtime); ``chat_attached=False`` leaves ``event.chat`` None
        (the chat is not in telethon's cache), ``get_chat()`` still finds it. From
        another thread this returns once the handlers ran; on the client's own loop
        they are scheduled (or use ``inject_message_async``).
        """
        update = self._build_update(
            chat_id,
            text,
            sender_id,
            sender_name,
            topic_id,
            reply_to,
            chat_username,
            date=date,
            chat_attached=chat_attached,
        )
        self._run_handlers(update, timeout)
        return update.message

    async def inject_message_async(
        self,
        chat_id: int,
        text: str,
        *,
        sender_id: int | None = None,
        sender_name: str = "Test User",
        topic_id: int | None = None,
        reply_to: int | None = None,
        chat_username: str | None = None,
        date: datetime | None = None,
        chat_attached: bool = True,
    ) -> Any:
        """``inject_message`` that returns once every handler has run."""
        update = self._build_update(
            chat_id,
            text,
            sender_id,
            sender_name,
            topic_id,
            reply_to,
            chat_username,
            date=date,
            chat_attached=chat_attached,
        )
        await self._run_handlers_async(update)
        return update.message

    def _run_handlers(self, update: Any, timeout: float, *, refuse_own_loop: str = "") -> None:
        """Run the handlers for ``update`` on their loops, waiting for each from here.

        The handlers of the loop this thread runs are scheduled; with ``refuse_own_loop``
        (the method's name) they are refused instead: waiting for them would block it.
        """
        running = running_loop()
        for loop, handlers in self._handlers_by_loop().items():
            if loop is not running:
                future = asyncio.run_coroutine_threadsafe(self._dispatch(update, handlers), loop)
                future.result(timeout)
            elif refuse_own_loop:
                raise RuntimeError(
                    f"{refuse_own_loop}() would block the event loop this fake runs on: "
                    f"use 'await {refuse_own_loop}_async(...)'"
                )
            else:
                task = loop.create_task(self._dispatch(update, handlers))
                self._dispatches.add(task)
                task.add_done_callback(self._dispatches.discard)

    async def _run_handlers_async(self, update: Any) -> None:
        """Run the handlers for ``update`` on their loops; return once all have run."""
        running = asyncio.get_running_loop()
        for loop, handlers in self._handlers_by_loop().items():
            if loop is running:
                await self._dispatch(update, handlers)
            else:
                future = asyncio.run_coroutine_threadsafe(self._dispatch(update, handlers), loop)
                await asyncio.wrap_future(future)

    def _handlers_by_loop(
        self,
    ) -> dict[asyncio.AbstractEventLoop, list[tuple[Any, EventCallback]]]:
        """The handlers to run, grouped by the loop each runs on (connected only)."""
        if self._loop is None or not self._connected:
            raise RuntimeError(
                "FakeTelegramClient is not connected: start the client (or the backend "
                "using it) before injecting messages"
            )
        groups: dict[asyncio.AbstractEventLoop, list[tuple[Any, EventCallback]]] = {}
        for builder, callback, loop in self._handlers:
            target = loop if loop is not None and not loop.is_closed() else self._loop
            groups.setdefault(target, []).append((builder, callback))
        return groups

    def _build_update(
        self,
        chat_id: int,
        text: str,
        sender_id: int | None,
        sender_name: str,
        topic_id: int | None,
        reply_to: int | None,
        chat_username: str | None,
        *,
        date: datetime | None = None,
        chat_attached: bool = True,
    ) -> Any:
        _check_chat_id(chat_id)
        peer_id, peer_type = utils.resolve_id(chat_id)
        now = (date or datetime.now(UTC)).replace(microsecond=0)  # Telegram dates: seconds
        private = peer_type is types.PeerUser
        if sender_id is None:
            sender_id = chat_id if private else _DEFAULT_MEMBER_ID
        sender = _user(
            sender_id, sender_name, chat_username if private and sender_id == chat_id else None
        )
        chat: Any
        if private:
            peer: Any = types.PeerUser(peer_id)
            chat = (
                sender
                if sender_id == chat_id
                else types.User(
                    id=peer_id,
                    first_name="Chat",
                    access_hash=peer_id * 31 + 7,
                    username=chat_username,
                )
            )
        elif peer_type is types.PeerChat:
            peer = types.PeerChat(peer_id)
            chat = types.Chat(
                id=peer_id,
                title="Fake group",
                photo=types.ChatPhotoEmpty(),
                participants_count=2,
                date=now,
                version=1,
            )
        else:
            peer = types.PeerChannel(peer_id)
            chat = types.Channel(
                id=peer_id,
                title="Fake supergroup",
                photo=types.ChatPhotoEmpty(),
                date=now,
                megagroup=True,
                forum=topic_id is not None,
                username=chat_username.lstrip("@") if chat_username else None,
                access_hash=peer_id * 31 + 7,
            )
        header = None
        if topic_id is not None:
            # In a topic, a plain message "replies" to the topic; a reply names the
            # topic in reply_to_top_id (telethon's MessageReplyHeader, as Telegram sends).
            header = types.MessageReplyHeader(
                forum_topic=True,
                reply_to_msg_id=reply_to if reply_to is not None else topic_id,
                reply_to_top_id=topic_id if reply_to is not None else None,
            )
        elif reply_to is not None:
            header = types.MessageReplyHeader(reply_to_msg_id=reply_to)
        message = types.Message(
            id=next(self._ids),
            peer_id=peer,
            date=now,
            message=text,
            out=False,
            from_id=None if private and sender_id == chat_id else types.PeerUser(sender_id),
            reply_to=header,
        )
        entities = {utils.get_peer_id(sender): sender, utils.get_peer_id(chat): chat}
        self._entities.update(entities)
        if peer_type is types.PeerChannel:
            update = types.UpdateNewChannelMessage(
                message=message, pts=next(self._pts), pts_count=1
            )
        else:
            update = types.UpdateNewMessage(message=message, pts=next(self._pts), pts_count=1)
        if not chat_attached:
            entities = {k: v for k, v in entities.items() if v is not chat or v is sender}
        update._entities = entities
        return update

    async def _dispatch(self, update: Any, handlers: list[tuple[Any, EventCallback]]) -> None:
        """Run ``handlers`` for ``update`` the way telethon's ``_dispatch_update`` does."""
        for builder, callback in handlers:
            if isinstance(builder, events.Raw):
                event = update
            elif isinstance(builder, events.NewMessage | events.CallbackQuery):
                event = builder.build(update, None, self._self_id)
                if not event:
                    continue
                event.original_update = update
                event._entities = update._entities
                event._set_client(self)
            else:
                continue
            if not builder.resolved:
                await builder.resolve(self)
            passed = builder.filter(event)
            if asyncio.iscoroutine(passed):
                passed = await passed
            if not passed:
                continue
            try:
                await callback(event)
            except events.StopPropagation:
                break
            except Exception as exc:
                name = getattr(callback, "__name__", repr(callback))
                logger.exception("Unhandled exception on %s", name)
                with self._lock:
                    self.handler_errors.append(exc)

    # -- editing, buttons and button presses (telethon API) --------------------------------

    def message(self, chat: int | str, message_id: int) -> SentMessage:
        """The message ``message_id`` of ``chat`` as it reads now (after its edits)."""
        with self._lock:
            current = self._current.get((_chat_key(chat), message_id))
        if current is None:
            raise KeyError(f"no message {message_id} was sent to chat {chat!r}")
        return current[0]

    async def edit_message(
        self,
        entity: Any,
        message: Any = None,
        text: str | None = None,
        *,
        parse_mode: Any = (),
        attributes: Any = None,
        formatting_entities: list[Any] | None = None,
        link_preview: bool = True,
        file: Any = None,
        thumb: Any = None,
        force_document: bool = False,
        buttons: Any = None,
        supports_streaming: bool = False,
        schedule: Any = None,
    ) -> Any:
        """Edit a message this fake sent, as Telegram would (telethon's signature).

        As on Telegram: an unknown message raises ``MessageIdInvalidError``, an edit
        that changes nothing ``MessageNotModifiedError``, and an edit without
        ``buttons`` removes the message's inline keyboard. Edits count against the
        same rate limits as sends.
        """
        request = functions.messages.EditMessageRequest(peer=types.InputPeerEmpty(), id=0)
        try:
            if file is not None:
                raise NotImplementedError("FakeTelegramClient edits text messages only")
            self._check_entity(entity)
            return await self._call(
                request,
                lambda: self._edit(entity, message, text, parse_mode, formatting_entities, buttons),
            )
        except Exception as exc:
            self._record_failure(entity, exc)
            raise

    async def _edit(
        self,
        entity: Any,
        message: Any,
        text: str | None,
        parse_mode: Any,
        formatting_entities: list[Any] | None,
        buttons: Any,
    ) -> Any:
        now = time.monotonic()
        self._check_connected()
        key = _chat_key(entity)
        message_id = utils.get_message_id(message)
        self._raise_scripted(key)
        with self._lock:
            current = self._current.get((key, message_id)) if message_id is not None else None
        if current is None:
            raise errors.MessageIdInvalidError(request=None)
        record, parsed = current
        new_text = record.text if text is None else str(text)
        if text is None:
            new_parsed = parsed
        elif record.media:  # a caption: Telegram's caption rules, the file stays
            new_parsed = caption_text(self, new_text, parse_mode, formatting_entities)
        else:
            new_parsed = self._parsed_text(new_text, parse_mode, formatting_entities)
        rows = _inline_rows(ButtonMethods.build_reply_markup(buttons))
        if new_parsed == parsed and rows == record.buttons:
            raise errors.MessageNotModifiedError(request=None)
        if self.enforce_rate_limits:
            now = self._check_rate_limits(key, entity)
        edited = replace(
            record, text=new_text, entities=formatting_entities, buttons=rows, time=now
        )
        with self._lock:
            self._current[(key, record.message_id)] = (edited, new_parsed)
            self.edits.append(EditedMessage(record.chat, record.message_id, new_text, rows, now))
        self._signal.notify()
        await asyncio.sleep(self.latency)
        return types.Message(
            id=record.message_id,
            peer_id=self._peer(entity),
            date=datetime.now(UTC),
            message=new_parsed,
            out=True,
            entities=formatting_entities,
            reply_markup=ButtonMethods.build_reply_markup(buttons),
            edit_date=datetime.now(UTC),
        )

    async def delete_messages(
        self, entity: Any, message_ids: Any, *, revoke: bool = True
    ) -> list[Any]:
        """Delete messages this fake sent (unknown ids are ignored, as Telegram does).

        Runs as telethon's ``DeleteMessagesRequest`` (``channels.`` for a channel or
        supergroup, ``messages.`` otherwise): flood memory, retries, silent mode apply.
        """
        try:
            self._check_entity(entity)
            key = _chat_key(entity)
            ids = message_ids if utils.is_list_like(message_ids) else [message_ids]
            request: TLRequest
            if isinstance(key, int) and utils.resolve_id(key)[1] is types.PeerChannel:
                request = functions.channels.DeleteMessagesRequest(
                    channel=types.InputChannelEmpty(), id=[]
                )
            else:
                request = functions.messages.DeleteMessagesRequest(id=[], revoke=revoke)
            return await self._call(request, lambda: self._delete(key, ids))
        except Exception as exc:
            self._record_failure(entity, exc)
            raise

    async def _delete(self, key: int | str, ids: Any) -> list[Any]:
        self._check_connected()
        self._raise_scripted(key)
        count = 0
        with self._lock:
            for message_id in ids:
                number = utils.get_message_id(message_id)
                if number is not None and self._current.pop((key, number), None) is not None:
                    self.deleted.append((key, number))
                    count += 1
        return [types.messages.AffectedMessages(pts=next(self._pts), pts_count=count)]

    async def __call__(self, request: Any, ordered: bool = False) -> Any:
        """Invoke a raw request; the fake answers ``SetBotCallbackAnswerRequest`` only."""
        if isinstance(request, functions.messages.SetBotCallbackAnswerRequest):

            async def answer() -> bool:
                if not self._connected:
                    raise ConnectionError("Cannot send requests while disconnected")
                with self._lock:
                    self.callback_answers.append(
                        CallbackAnswer(request.query_id, request.message, bool(request.alert))
                    )
                self._signal.notify()
                return True

            return await self._call(request, answer)
        raise NotImplementedError(
            f"FakeTelegramClient does not answer {type(request).__name__} requests"
        )

    def press_button(
        self,
        chat_id: int,
        message_id: int,
        data: bytes | str,
        *,
        sender_id: int,
        sender_name: str = "Test User",
        timeout: float = 5.0,
    ) -> CallbackAnswer | None:
        """Press an inline button of a sent message, as ``sender_id`` would.

        The press reaches the ``CallbackQuery`` handlers as a real telethon event built
        from ``UpdateBotCallbackQuery``. Returns the bot's answer to it (None when the
        handlers gave none). ``ValueError`` when the message has no button with ``data``.
        From another thread this returns once the handlers ran; on the client's own loop
        use ``press_button_async``.
        """
        update = self._build_callback(chat_id, message_id, data, sender_id, sender_name)
        self._run_handlers(update, timeout, refuse_own_loop="press_button")
        return self._answer_to(update.query_id)

    async def press_button_async(
        self,
        chat_id: int,
        message_id: int,
        data: bytes | str,
        *,
        sender_id: int,
        sender_name: str = "Test User",
    ) -> CallbackAnswer | None:
        """``press_button`` that awaits every handler instead of blocking."""
        update = self._build_callback(chat_id, message_id, data, sender_id, sender_name)
        await self._run_handlers_async(update)
        return self._answer_to(update.query_id)

    def _answer_to(self, query_id: int) -> CallbackAnswer | None:
        with self._lock:
            return next((a for a in self.callback_answers if a.query_id == query_id), None)

    def _build_callback(
        self,
        chat_id: int,
        message_id: int,
        data: bytes | str,
        sender_id: int,
        sender_name: str,
    ) -> Any:
        _check_chat_id(chat_id)
        payload = data.encode() if isinstance(data, str) else bytes(data)
        current = self.message(chat_id, message_id)
        if not any(button.data == payload for row in current.buttons for button in row):
            shown = [button.data for row in current.buttons for button in row]
            raise ValueError(
                f"message {message_id} in chat {chat_id} has no button with data "
                f"{payload!r} (its buttons: {shown!r})"
            )
        peer_id, peer_type = utils.resolve_id(chat_id)
        sender = _user(sender_id, sender_name)
        peer: Any = peer_type(peer_id)
        query_id = next(self._queries)
        update = types.UpdateBotCallbackQuery(
            query_id=query_id,
            user_id=sender_id,
            peer=peer,
            msg_id=message_id,
            chat_instance=abs(chat_id) * 97 + 1,
            data=payload,
        )
        entities = {utils.get_peer_id(sender): sender}
        self._entities.update(entities)
        update._entities = entities
        return update


def _check_chat_id(chat_id: int) -> None:
    if isinstance(chat_id, bool) or not isinstance(chat_id, int):
        raise TypeError(f"chat_id must be a marked integer id, got {chat_id!r}")


def _user(user_id: int, name: str, username: str | None = None) -> types.User:
    """The ``User`` a test plays (who writes a message or presses a button)."""
    first, _, last = name.partition(" ")
    return types.User(
        id=user_id,
        first_name=first,
        last_name=last or None,
        bot=False,
        access_hash=user_id * 31 + 7,
        username=username,
    )


async def _hang() -> None:
    """Wait for ever (until cancelled), as a request to a silent server does."""
    await asyncio.get_running_loop().create_future()


def _inline_rows(markup: Any) -> tuple[tuple[InlineButton, ...], ...]:
    """The inline buttons of a reply markup, as rows of (text, data)."""
    rows = getattr(markup, "rows", None) or ()
    return tuple(tuple(InlineButton(b.text, _button_data(b)) for b in row.buttons) for row in rows)


def _button_data(button: Any) -> bytes:
    # Older layers: KeyboardButtonCallback(data=...); newer ones (telethon 1.43):
    # KeyboardInlineButton(type=InlineButtonTypeCallback(data=...)).
    data = getattr(button, "data", None)
    if data is None:
        data = getattr(getattr(button, "type", None), "data", None)
    return bytes(data or b"")
