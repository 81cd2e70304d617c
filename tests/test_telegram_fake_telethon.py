"""FakeTelegramClient reproduces telethon's request logic where the backend depends on it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from telethon import errors
from telethon.sessions import StringSession
from telethon.tl import functions

from processpype.testing.telegram import FakeTelegramClient

TOKEN = "123456:TEST-token"
GROUP = -1001234567890
OTHER = -1002222222222


async def started(fake: FakeTelegramClient, **options: object) -> FakeTelegramClient:
    fake.as_client_factory()(StringSession(), 1, "hash", flood_sleep_threshold=0, **options)
    await fake.start(bot_token=TOKEN)
    return fake


@pytest.mark.asyncio
async def test_flood_wait_over_3_seconds_refuses_every_chat_until_it_ends() -> None:
    fake = await started(FakeTelegramClient())
    fake.fail_next(errors.FloodWaitError(request=None, capture=6), chat=GROUP)

    with pytest.raises(errors.FloodWaitError):
        await fake.send_message(GROUP, "flooded")
    with pytest.raises(errors.FloodWaitError) as caught:
        await fake.send_message(OTHER, "refused locally")

    assert caught.value.seconds in (5, 6)
    assert fake.texts == []


@pytest.mark.asyncio
async def test_flood_memory_is_per_request_type_and_can_be_cleared_like_telethons() -> None:
    fake = await started(FakeTelegramClient())
    fake.fail_next(errors.FloodWaitError(request=None, capture=6), chat=GROUP)
    with pytest.raises(errors.FloodWaitError) as caught:
        await fake.send_message(GROUP, "flooded")

    # The error names its request, as telethon's do: its type keys the memory.
    constructor = type(caught.value.request).CONSTRUCTOR_ID
    assert constructor in fake._flood_waited_requests
    fake._flood_waited_requests.pop(constructor)
    await fake.send_message(OTHER, "after forgetting")

    assert fake.texts == ["after forgetting"]


@pytest.mark.asyncio
async def test_short_flood_wait_is_slept_through_under_flood_sleep_threshold() -> None:
    fake = await started(FakeTelegramClient())
    fake.flood_sleep_threshold = 60
    fake.rate_limits = fake.rate_limits.scaled(0.001)  # 1 Telegram second: 1 ms
    fake.fail_next(errors.FloodWaitError(request=None, capture=1))

    await fake.send_message(GROUP, "after sleeping")

    assert fake.texts == ["after sleeping"]


@pytest.mark.asyncio
async def test_server_error_is_repeated_internally_then_raised_as_the_flags_say() -> None:
    fake = await started(FakeTelegramClient(), request_retries=1, raise_last_call_error=True)
    fake.internal_retry_delay = 0.0
    fake.fail_next(errors.ServerError(request=None, message="INTERNAL", code=500), count=3)

    with pytest.raises(errors.ServerError):
        await fake.send_message(GROUP, "two tries fail")
    await fake.send_message(GROUP, "the third try passes")

    assert fake.texts == ["the third try passes"]


@pytest.mark.asyncio
async def test_server_errors_end_in_telethons_value_error_by_default() -> None:
    fake = await started(FakeTelegramClient())  # request_retries=5, raise_last_call_error off
    fake.internal_retry_delay = 0.0
    fake.fail_next(errors.ServerError(request=None, message="INTERNAL", code=500), count=6)

    with pytest.raises(ValueError, match=r"Request was unsuccessful 6 time\(s\)"):
        await fake.send_message(GROUP, "six tries fail")


@pytest.mark.asyncio
async def test_silent_mode_hangs_connect_until_cancelled() -> None:
    fake = FakeTelegramClient()
    fake.silent = True

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await fake.connect()

    assert not fake.is_connected()  # no auth key: the exchange never finished


@pytest.mark.asyncio
async def test_silent_mode_with_an_auth_key_leaves_a_half_open_client_like_telethon() -> None:
    fake = FakeTelegramClient()
    fake.as_client_factory()(StringSession(fake.session_string_for(123456)), 1, "hash")
    fake.silent = True

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await fake.connect()

    assert fake.is_connected()


@pytest.mark.asyncio
async def test_login_is_bound_to_the_sessions_auth_key() -> None:
    fake = FakeTelegramClient()
    session = StringSession()
    fake.as_client_factory()(session, 1, "hash")
    await fake.start(bot_token=TOKEN)
    await fake.disconnect()
    fake.as_client_factory()(StringSession(session.save()), 1, "hash")
    await fake.start(bot_token=TOKEN)

    assert fake.logins == 1
    assert (await fake.get_me()).id == 123456


@pytest.mark.asyncio
async def test_scripted_login_flood_wait_is_remembered_for_the_login_request() -> None:
    fake = FakeTelegramClient()
    fake.as_client_factory()(StringSession(), 1, "hash", flood_sleep_threshold=0)
    fake.fail_next_login(errors.FloodWaitError(request=None, capture=2800))

    with pytest.raises(errors.FloodWaitError):
        await fake.start(bot_token=TOKEN)
    with pytest.raises(errors.FloodWaitError):
        await fake.start(bot_token=TOKEN)  # telethon's memory refuses it locally

    assert fake.logins == 0


# -- files, edits and deletions run through the same request logic -------------------------


async def sent_one(fake: FakeTelegramClient, chat: int) -> int:
    message = await fake.send_message(chat, "to edit")
    return int(message.id)


@pytest.mark.asyncio
async def test_flood_wait_on_a_file_refuses_later_files_to_every_chat_but_not_texts() -> None:
    fake = await started(FakeTelegramClient())
    fake.fail_next(errors.FloodWaitError(request=None, capture=6), chat=GROUP)

    with pytest.raises(errors.FloodWaitError):
        await fake.send_file(GROUP, b"flooded")
    with pytest.raises(errors.FloodWaitError) as caught:
        await fake.send_file(OTHER, b"refused locally")
    await fake.send_message(OTHER, "a text is another request type")

    assert type(caught.value.request).__name__ == "SendMediaRequest"
    assert fake.sent_files == []
    assert fake.texts == ["a text is another request type"]


@pytest.mark.asyncio
async def test_album_flood_wait_is_remembered_apart_from_single_files() -> None:
    fake = await started(FakeTelegramClient())
    fake.fail_next(errors.FloodWaitError(request=None, capture=6), chat=GROUP)

    with pytest.raises(errors.FloodWaitError) as caught:
        await fake.send_file(GROUP, [b"a", b"b"])
    with pytest.raises(errors.FloodWaitError):
        await fake.send_file(OTHER, [b"c", b"d"])
    await fake.send_file(OTHER, b"a single file")

    assert type(caught.value.request).__name__ == "SendMultiMediaRequest"
    assert [f.data for f in fake.sent_files] == [b"a single file"]


@pytest.mark.asyncio
async def test_flood_wait_on_an_edit_refuses_later_edits_in_every_chat() -> None:
    fake = await started(FakeTelegramClient())
    first, second = await sent_one(fake, GROUP), await sent_one(fake, OTHER)
    fake.fail_next(errors.FloodWaitError(request=None, capture=6), chat=GROUP)

    with pytest.raises(errors.FloodWaitError) as caught:
        await fake.edit_message(GROUP, first, "flooded")
    with pytest.raises(errors.FloodWaitError):
        await fake.edit_message(OTHER, second, "refused locally")

    assert type(caught.value.request).__name__ == "EditMessageRequest"
    assert fake.edits == []


@pytest.mark.asyncio
async def test_deletions_run_as_telethons_delete_request() -> None:
    fake = await started(FakeTelegramClient())
    message_id = await sent_one(fake, GROUP)
    fake.fail_next(errors.FloodWaitError(request=None, capture=6), chat=GROUP)

    with pytest.raises(errors.FloodWaitError) as caught:
        await fake.delete_messages(GROUP, [message_id])

    # A supergroup's messages are deleted with the channels' request, as telethon does.
    assert isinstance(caught.value.request, functions.channels.DeleteMessagesRequest)
    assert caught.value.request.CONSTRUCTOR_ID in fake._flood_waited_requests
    assert fake.deleted == []


@pytest.mark.asyncio
async def test_server_errors_on_files_and_edits_are_repeated_internally() -> None:
    fake = await started(FakeTelegramClient(), request_retries=1, raise_last_call_error=True)
    fake.internal_retry_delay = 0.0
    message_id = await sent_one(fake, GROUP)
    internal = errors.ServerError(request=None, message="INTERNAL", code=500)

    fake.fail_next(internal)
    await fake.send_file(GROUP, b"after one repeat")
    fake.fail_next(internal)
    await fake.edit_message(GROUP, message_id, "after one repeat too")

    assert [f.data for f in fake.sent_files] == [b"after one repeat"]
    assert [e.text for e in fake.edits] == ["after one repeat too"]


@pytest.mark.asyncio
async def test_silent_mode_hangs_files_edits_and_deletions() -> None:
    fake = await started(FakeTelegramClient())
    message_id = await sent_one(fake, GROUP)
    fake.silent = True
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: fake.send_file(GROUP, b"hangs"),
        lambda: fake.edit_message(GROUP, message_id, "hangs"),
        lambda: fake.delete_messages(GROUP, [message_id]),
    ]

    for call in calls:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await call()

    assert (fake.sent_files, fake.edits, fake.deleted) == ([], [], [])


@pytest.mark.asyncio
async def test_a_client_without_updates_keeps_no_flood_memory_like_telethon() -> None:
    # telethon files the wait under InvokeWithoutUpdatesRequest, which it never checks.
    fake = await started(FakeTelegramClient(), receive_updates=False)
    fake.fail_next(errors.FloodWaitError(request=None, capture=6), chat=GROUP)

    with pytest.raises(errors.FloodWaitError) as caught:
        await fake.send_message(GROUP, "flooded")
    await fake.send_message(OTHER, "not refused")

    assert type(caught.value.request).__name__ == "InvokeWithoutUpdatesRequest"
    assert fake.texts == ["not refused"]


@pytest.mark.asyncio
async def test_an_album_of_more_than_ten_files_is_two_sends_for_the_rate_limits() -> None:
    fake = await started(FakeTelegramClient(enforce_rate_limits=True))

    with pytest.raises(errors.FloodWaitError):
        await fake.send_file(OTHER, [b"%d" % i for i in range(12)])  # two albums, at once

    assert len(fake.sent_files) == 10  # the first album; the second broke the chat's limit
    assert fake.flood_waits == 1
