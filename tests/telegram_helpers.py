"""Shared pieces of the Telegram tests: backends on the fake, real telethon on loopback."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from telethon import errors, events
from telethon.crypto import AuthKey
from telethon.errors import rpc_message_to_error
from telethon.tl import functions, types

from processpype.communications.backends.telegram import (
    TelegramCommunicator,
    TelegramRateLimits,
    set_default_client_factory,
    telethon_client,
)
from processpype.communications.models import OutgoingMessage
from processpype.testing.telegram import FakeTelegramClient

FAST_LIMITS: dict[str, Any] = {
    "per_chat_per_second": 1000.0,
    "per_group_per_minute": 100_000,
    "global_per_second": 10_000.0,
}
"""Rate limits far above what a test sends: for tests about routing, not pacing."""


ENFORCED_LIMITS = TelegramRateLimits(per_chat_per_second=50.0, global_per_second=100.0)
"""Fast limits that a backend keeps to and an enforcing fake answers a flood wait beyond."""


@contextmanager
def enforcing_default_fake() -> Iterator[FakeTelegramClient]:
    """A fake answering a flood wait beyond ``ENFORCED_LIMITS``, the default client factory."""
    client = FakeTelegramClient(enforce_rate_limits=True, rate_limits=ENFORCED_LIMITS)
    previous = set_default_client_factory(client.as_client_factory())
    try:
        yield client
    finally:
        set_default_client_factory(previous)


def listening_backends(tmp_path: Path, chat: int, **chat_fields: Any) -> dict[str, Any]:
    """A config's backends: ``tg``, listening to commands in ``chat``, within ENFORCED_LIMITS."""
    return {
        "tg": {
            "type": "telegram",
            "api_id": 12345,
            "api_hash": "0123456789abcdef0123456789abcdef",
            "token": "123456:TEST-token_for-the-fake",
            "listen_to_commands": True,
            "session_path": str(tmp_path / "sessions"),
            "per_chat_per_second": ENFORCED_LIMITS.per_chat_per_second,
            "global_per_second": ENFORCED_LIMITS.global_per_second,
            "chats": {"default": {"chat_id": str(chat), **chat_fields}},
        }
    }


def quick_fake() -> FakeTelegramClient:
    """A ``FakeTelegramClient`` that repeats a request after a server error at once."""
    fake = FakeTelegramClient()
    fake.internal_retry_delay = 0.0  # telethon sleeps 2 s before repeating a request
    return fake


class BackendMaker:
    """``await make(**overrides)`` starts a backend on ``fake``; leaving stops them all."""

    def __init__(
        self,
        fake: FakeTelegramClient,
        defaults: dict[str, Any],
        *,
        limits: TelegramRateLimits | None = None,
    ) -> None:
        self._fake = fake
        self._defaults = defaults
        self._limits = limits
        self._made: list[TelegramCommunicator] = []

    async def __call__(
        self, *, limits: TelegramRateLimits | None = None, **overrides: Any
    ) -> TelegramCommunicator:
        config = self._fake.telegram_config(**{**self._defaults, **overrides})
        chosen = limits or self._limits
        extra = {} if chosen is None else {"rate_limits": chosen}
        backend = TelegramCommunicator(
            "tg", config, client_factory=self._fake.as_client_factory(), **extra
        )
        await backend.start()
        self._made.append(backend)
        return backend

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for backend in self._made:
            await backend.stop()


def msg(text: str = "disk full", label: str = "default") -> OutgoingMessage:
    """A message for ``label``."""
    return OutgoingMessage(message=text, label=label)


def press_event(client: Any, update: types.UpdateBotCallbackQuery) -> Any:
    """telethon's own ``CallbackQuery`` event for ``update``, as ``client`` hands it over."""
    event = events.CallbackQuery.build(update)
    event._entities = {}
    event._set_client(client)
    return event


# -- real telethon on loopback --------------------------------------------------------

LOOPBACK_DC = 2


class LoopbackServer:
    """A local TCP server on 127.0.0.1 that behaves as a broken path to Telegram would.

    ``mode``: ``"silent"`` accepts and never answers (DPI, a black-holed route),
    ``"http"`` answers an HTTP error page and stays open (a transparent proxy),
    ``"garbage"`` answers bytes that are not MTProto, ``"refuse"`` leaves the port closed.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Self:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        if self.mode == "refuse":
            server.close()  # the port stays known and closed: connections are refused
            await server.wait_closed()
        else:
            self._server = server
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            await reader.read(1)  # the client's first bytes
            if self.mode == "http":
                writer.write(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\n"
                    b"Content-Length: 2000000\r\n\r\n<html><body>Blocked</body>"
                )
            elif self.mode == "garbage":
                # Not MTProto: a frame header claiming 4 bytes (less than a header),
                # then noise. (Random bytes could also claim a huge frame, which
                # telethon waits for: the "http" case.)
                writer.write(b"\x04\x00\x00\x00\x00\x00\x00\x00" + os.urandom(56))
            await writer.drain()
            await reader.read()  # stay open until the client leaves
        except (ConnectionError, OSError):
            pass


class ClientsBuilt:
    """A ``client_factory`` building telethon's real client as the backend does, on loopback.

    ``port`` points the session at a ``LoopbackServer``; ``server`` (a ``StubTelegram``)
    replaces the client's network sender instead, so telethon's own request logic runs.
    Every client built is kept in ``clients``.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        server: StubTelegram | None = None,
        **overrides: Any,
    ) -> None:
        self.port = port
        self.server = server
        self.overrides = overrides
        self.clients: list[Any] = []

    def __call__(self, session: Any, api_id: int, api_hash: str, **options: Any) -> Any:
        client = telethon_client(session, api_id, api_hash, **{**options, **self.overrides})
        if self.port is not None:
            client.session.set_dc(LOOPBACK_DC, "127.0.0.1", self.port)
        if self.server is not None:
            if not client.session.server_address:
                client.session.set_dc(LOOPBACK_DC, "127.0.0.1", 443)
            client._sender = StubSender(self.server, client.session.auth_key)
        self.clients.append(client)
        return client


Answer = Callable[[Any], Any]


class StubTelegram:
    """Telegram's side of a stubbed sender: answers requests, remembers logins by auth key.

    ``script[RequestType]`` holds answers to give (in order) before the normal ones: an
    ``RpcError``-like ``(code, "MESSAGE")`` tuple is turned into telethon's own error
    class by ``rpc_message_to_error``, as telethon's sender does.
    """

    def __init__(self, bot_id: int = 123456) -> None:
        self.bot = types.User(
            id=bot_id,
            is_self=True,
            bot=True,
            first_name="Stub",
            username="stub_bot",
            access_hash=99,
        )
        self.requests: list[Any] = []
        self.logins = 0
        self.silent = False
        """True: requests are never answered (the link is up, the server black-holed)."""
        self.script: dict[type, deque[tuple[int, str]]] = {}
        self.missed: list[Any] = []
        """Messages sent while the client was away, handed over by getDifference."""
        self._authorized: set[bytes] = set()
        self._ids = itertools.count(1)

    member = types.User(id=7, first_name="Ada", access_hash=7)

    @staticmethod
    def group(chat_id: int) -> Any:
        """A small group (marked id ``chat_id``, negative) as Telegram describes it."""
        return types.Chat(
            id=-chat_id,
            title="Stub group",
            photo=types.ChatPhotoEmpty(),
            participants_count=2,
            date=datetime.now(UTC),
            version=1,
        )

    def miss(self, chat_id: int, text: str, *, date: datetime) -> None:
        """A message to the bot in group ``chat_id`` while it is offline."""
        self.missed.append(
            types.Message(
                id=next(self._ids),
                peer_id=types.PeerChat(-chat_id),
                date=date,
                message=text,
                from_id=types.PeerUser(self.member.id),
            )
        )

    def fail(self, request_type: type, code: int, message: str, *, count: int = 1) -> None:
        """Answer the next ``count`` requests of ``request_type`` with this RPC error."""
        self.script.setdefault(request_type, deque()).extend([(code, message)] * count)

    def of_type(self, request_type: type) -> list[Any]:
        """The requests of ``request_type`` that reached the server."""
        return [r for r in self.requests if isinstance(r, request_type)]

    def answer(self, request: Any, auth_key: bytes) -> Any:
        sent = request
        while isinstance(request, _WRAPPERS):
            request = request.query
        self.requests.append(request)
        scripted = self.script.get(type(request))
        if scripted:
            code, message = scripted.popleft()
            # telethon's sender names the request as it was sent (wrappers included).
            raise rpc_message_to_error(types.RpcError(code, message), sent)
        now = datetime.now(UTC)
        if isinstance(request, functions.help.GetConfigRequest):
            return None  # connect() does not read it
        if isinstance(request, functions.users.GetUsersRequest):
            if auth_key not in self._authorized:
                raise errors.AuthKeyUnregisteredError(request=request)
            return [self.bot]
        if isinstance(request, functions.auth.ImportBotAuthorizationRequest):
            self._authorized.add(auth_key)
            self.logins += 1
            return types.auth.Authorization(user=self.bot)
        if isinstance(request, functions.updates.GetStateRequest):
            return types.updates.State(pts=1, qts=0, date=now, seq=1, unread_count=0)
        if isinstance(request, functions.updates.GetDifferenceRequest):
            if not self.missed:
                return types.updates.DifferenceEmpty(date=now, seq=1)
            messages, self.missed = self.missed, []
            return types.updates.Difference(
                new_messages=messages,
                new_encrypted_messages=[],
                other_updates=[],
                chats=[self.group(-m.peer_id.chat_id) for m in messages],
                users=[self.member],
                state=types.updates.State(
                    pts=request.pts + len(messages), qts=0, date=now, seq=1, unread_count=0
                ),
            )
        if isinstance(request, functions.messages.SendMessageRequest):
            return types.UpdateShortSentMessage(
                id=next(self._ids), pts=1, pts_count=1, date=now, out=True
            )
        if isinstance(
            request, functions.upload.SaveFilePartRequest | functions.upload.SaveBigFilePartRequest
        ):
            return True
        if isinstance(
            request, functions.messages.SendMediaRequest | functions.messages.SendMultiMediaRequest
        ):
            return types.Updates(updates=[], users=[], chats=[], date=now, seq=0)
        if isinstance(request, functions.messages.EditMessageRequest):
            message = types.Message(
                id=request.id, peer_id=types.PeerChat(111), date=now, message=request.message
            )
            update = types.UpdateEditMessage(message=message, pts=2, pts_count=1)
            return types.Updates(updates=[update], users=[], chats=[], date=now, seq=0)
        if isinstance(request, functions.messages.DeleteMessagesRequest):
            return types.messages.AffectedMessages(pts=3, pts_count=len(request.id))
        raise errors.MethodInvalidError(request=request)


class StubSender:
    """Stands in for telethon's ``MTProtoSender``: no network, answers from a StubTelegram."""

    def __init__(self, server: StubTelegram, auth_key: Any) -> None:
        self.server = server
        self.auth_key = auth_key or AuthKey(None)
        self._connected = False
        self._disconnected: asyncio.Future[None] | None = None

    async def connect(self, connection: Any) -> bool:
        if self._connected:
            return False
        if not self.auth_key:
            self.auth_key.key = os.urandom(256)  # the auth-key exchange
        self._connected = True
        self._disconnected = asyncio.get_running_loop().create_future()
        return True

    def is_connected(self) -> bool:
        return self._connected

    def _transport_connected(self) -> bool:
        return self._connected

    def _keepalive_ping(self, rnd_id: int) -> None:
        pass

    async def disconnect(self) -> None:
        self._connected = False
        if self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(None)

    @property
    def disconnected(self) -> asyncio.Future[None]:
        if self._disconnected is None:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return asyncio.shield(self._disconnected)

    def send(self, request: Any, ordered: bool = False) -> Any:
        if isinstance(request, list):  # a batch (delete_messages sends one): a future each
            return [self.send(one, ordered) for one in request]
        if not self._connected:
            raise ConnectionError("Cannot send requests while disconnected")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.server.silent:
            return future  # never resolved
        try:
            future.set_result(self.server.answer(request, bytes(self.auth_key.key or b"")))
        except Exception as exc:
            future.set_exception(exc)
        return future


_WRAPPERS = (
    functions.InvokeWithLayerRequest,
    functions.InitConnectionRequest,
    functions.InvokeWithoutUpdatesRequest,
)
