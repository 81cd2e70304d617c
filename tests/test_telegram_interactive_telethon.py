"""Edits and buttons through real telethon: only its network sender is stubbed.

telethon builds the requests (``SendMessageRequest`` with a ``ReplyInlineMarkup``,
``EditMessageRequest``, ``DeleteMessagesRequest``), resolves the chat and maps the
server's error answers to its own exceptions; the stub plays Telegram's part.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from telegram_helpers import press_event
from telethon import Button, TelegramClient, errors
from telethon.sessions import StringSession
from telethon.tl import functions, types

from processpype.communications.ask import Question
from processpype.communications.backends._telegram_interactive import (
    CLOSED,
    NOT_ALLOWED,
    TrackedJob,
    _Pending,
)
from processpype.communications.backends._telegram_queue import ChatTarget
from processpype.communications.backends._telegram_text import Chunk
from processpype.communications.backends.telegram import TelegramCommunicator
from processpype.communications.delivery import DeliveryResult
from processpype.communications.models import OutgoingMessage
from processpype.testing.telegram import FakeTelegramClient

GROUP = -4242  # a small group: telethon resolves it without a network call


class StubSender:
    """Stands in for telethon's MTProto sender: records requests, answers like Telegram."""

    def __init__(self, answer: Callable[[Any], Any]) -> None:
        self.requests: list[Any] = []
        self._answer = answer

    def send(self, request: Any, ordered: bool = False) -> Any:
        if isinstance(request, list):  # a batch (delete_messages sends one): a future each
            return [self._one(r) for r in request]
        return self._one(request)

    def _one(self, request: Any) -> asyncio.Future[Any]:
        self.requests.append(request)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(self._answer(request))
        except errors.RPCError as exc:
            future.set_exception(exc)
        return future


def telegram_answer(request: Any) -> Any:
    now = datetime.now(UTC)
    if isinstance(request, functions.messages.SendMessageRequest):
        return types.UpdateShortSentMessage(id=77, pts=1, pts_count=1, date=now, out=True)
    if isinstance(request, functions.messages.EditMessageRequest):
        if request.message == "unchanged":
            # What Telegram answers; telethon maps it to its own error class.
            raise errors.rpc_message_to_error(types.RpcError(400, "MESSAGE_NOT_MODIFIED"), request)
        message = types.Message(
            id=request.id, peer_id=types.PeerChat(-GROUP), date=now, message=request.message
        )
        update = types.UpdateEditMessage(message=message, pts=2, pts_count=1)
        return types.Updates(updates=[update], users=[], chats=[], date=now, seq=0)
    if isinstance(request, functions.messages.SetBotCallbackAnswerRequest):
        return True
    if isinstance(request, functions.messages.DeleteMessagesRequest):
        return types.messages.AffectedMessages(pts=3, pts_count=len(request.id))
    raise AssertionError(f"unexpected request {request!r}")


def real_client() -> tuple[TelegramClient, StubSender]:
    client = TelegramClient(StringSession(), 12345, "0123456789abcdef0123456789abcdef")
    sender = StubSender(telegram_answer)
    client._sender = sender
    return client, sender


def job(text: str, **fields: Any) -> TrackedJob:
    message = OutgoingMessage(message=text)
    outcome: asyncio.Future[DeliveryResult] = asyncio.get_running_loop().create_future()
    tracked = TrackedJob(message, ChatTarget(entity=GROUP, label="default"), [Chunk(text)], outcome)
    for name, value in fields.items():
        setattr(tracked, name, value)
    return tracked


def interactions(**chat: Any) -> Any:
    config = FakeTelegramClient.telegram_config(chats={"default": {"chat_id": str(GROUP), **chat}})
    return TelegramCommunicator("tg", config)._interactions


@pytest.mark.asyncio
async def test_a_question_reaches_telethon_with_an_inline_keyboard() -> None:
    client, sender = real_client()
    buttons = [[Button.inline("yes", b"pp:t:0"), Button.inline("no", b"pp:t:1")]]
    tracked = job("Deploy?", buttons=buttons)

    await interactions().send_piece(client, tracked, tracked.chunks[0])

    [request] = sender.requests
    assert isinstance(request, functions.messages.SendMessageRequest)
    assert request.peer == types.InputPeerChat(-GROUP)
    assert isinstance(request.reply_markup, types.ReplyInlineMarkup)
    [row] = request.reply_markup.rows
    assert [button.text for button in row.buttons] == ["yes", "no"]
    assert tracked.piece_ids == [77]  # the id telethon read from Telegram's answer


@pytest.mark.asyncio
async def test_an_edit_becomes_telethons_edit_request_without_a_keyboard() -> None:
    client, sender = real_client()
    tracked = job("deployed", edit_ids=(77,))

    await interactions().send_piece(client, tracked, tracked.chunks[0])

    [request] = sender.requests
    assert isinstance(request, functions.messages.EditMessageRequest)
    assert (request.peer, request.id, request.message) == (
        types.InputPeerChat(-GROUP),
        77,
        "deployed",
    )
    assert request.reply_markup is None  # an edit without buttons removes them
    assert tracked.piece_ids == [77]


@pytest.mark.asyncio
async def test_telegrams_message_not_modified_answer_counts_as_done() -> None:
    client, sender = real_client()
    tracked = job("unchanged", edit_ids=(77,))

    await interactions().send_piece(client, tracked, tracked.chunks[0])

    assert len(sender.requests) == 1
    assert tracked.piece_ids == [77]


@pytest.mark.asyncio
async def test_pieces_an_edit_no_longer_needs_are_deleted() -> None:
    client, sender = real_client()
    tracked = job("short now", edit_ids=(77, 78, 79))

    await interactions().send_piece(client, tracked, tracked.chunks[0])

    edit, delete = sender.requests
    assert isinstance(edit, functions.messages.EditMessageRequest)
    assert isinstance(delete, functions.messages.DeleteMessagesRequest)
    assert (delete.id, delete.revoke) == ([78, 79], True)


@pytest.mark.asyncio
async def test_a_refused_press_is_answered_through_telethons_callback_answer() -> None:
    client, sender = real_client()
    side = interactions(command_authorized=True, allowed_sender_ids=[42])
    backend = side._backend
    target = backend._targets["default"]
    question = Question.build("Deploy?", choices=["yes"], label="default", timeout=5)
    answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    side._pending["tok"] = _Pending(question, target, backend._tg_config.chats["default"], answer)
    update = types.UpdateBotCallbackQuery(
        query_id=991,
        user_id=7,
        peer=types.PeerChat(-GROUP),
        msg_id=77,
        chat_instance=1,
        data=b"pp:tok:0",
    )
    event = press_event(client, update)  # telethon's own event

    await side._on_callback(event)

    [request] = sender.requests
    assert isinstance(request, functions.messages.SetBotCallbackAnswerRequest)
    assert (request.query_id, request.message, request.alert) == (991, NOT_ALLOWED, True)
    assert not answer.done()


@pytest.mark.asyncio
async def test_a_press_on_a_closed_question_is_answered_closed() -> None:
    client, sender = real_client()
    side = interactions(command_authorized=True)
    update = types.UpdateBotCallbackQuery(
        query_id=992,
        user_id=42,
        peer=types.PeerChat(-GROUP),
        msg_id=77,
        chat_instance=1,
        data=b"pp:long-gone:0",
    )
    event = press_event(client, update)

    await side._on_callback(event)

    [request] = sender.requests
    assert (request.query_id, request.message, request.alert) == (992, CLOSED, False)


@pytest.mark.asyncio
async def test_a_press_of_another_handlers_button_is_left_alone() -> None:
    client, sender = real_client()
    update = types.UpdateBotCallbackQuery(
        query_id=993, user_id=42, peer=types.PeerChat(-GROUP), msg_id=5, chat_instance=1, data=b"x"
    )
    event = press_event(client, update)

    await interactions(command_authorized=True)._on_callback(event)

    assert sender.requests == []
