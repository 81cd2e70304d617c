"""FakeTelegramClient answers like telethon and Telegram, with telethon's own errors."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
from telethon import errors, events

from processpype.communications.backends.telegram import TelegramRateLimits
from processpype.testing import FakeTelegramClient as ExportedFake
from processpype.testing.telegram import FakeTelegramClient

TOKEN = "123456:TEST-token"
GROUP = -1001234567890


async def started(fake: FakeTelegramClient) -> FakeTelegramClient:
    fake.flood_sleep_threshold = 0  # as the backend sets it: flood waits are raised
    await fake.start(bot_token=TOKEN)
    return fake


def test_fake_is_exported_from_the_testing_package() -> None:
    assert ExportedFake is FakeTelegramClient


@pytest.mark.parametrize(("api_id", "api_hash"), [(0, "hash"), (1, ""), (None, "hash")])
def test_factory_refuses_empty_api_id_or_hash_like_telethon(api_id: int, api_hash: str) -> None:
    factory = FakeTelegramClient().as_client_factory()

    with pytest.raises(ValueError, match="API ID or Hash cannot be empty"):
        factory(None, api_id, api_hash)


def test_factory_returns_the_same_fake_every_time() -> None:
    fake = FakeTelegramClient()
    factory = fake.as_client_factory()

    assert factory("a", 1, "h") is fake
    assert factory("b", 1, "h") is fake
    assert fake.sessions == ["a", "b"]


@pytest.mark.asyncio
async def test_start_without_bot_token_refuses_the_interactive_login() -> None:
    with pytest.raises(RuntimeError, match="interactive phone login"):
        await FakeTelegramClient().start()


@pytest.mark.asyncio
async def test_malformed_bot_token_is_refused_as_telegram_would() -> None:
    with pytest.raises(errors.AccessTokenInvalidError):
        await FakeTelegramClient().start(bot_token="not a token")


@pytest.mark.asyncio
async def test_get_me_is_the_bot_named_by_the_token() -> None:
    fake = await started(FakeTelegramClient())

    me = await fake.get_me()

    assert (me.id, me.bot) == (123456, True)


@pytest.mark.asyncio
async def test_send_while_disconnected_raises_connection_error() -> None:
    with pytest.raises(ConnectionError, match="while disconnected"):
        await FakeTelegramClient().send_message(GROUP, "hi")


@pytest.mark.asyncio
async def test_text_over_4096_utf16_units_is_too_long() -> None:
    fake = await started(FakeTelegramClient())

    await fake.send_message(GROUP, "x" * 4096, parse_mode=None)
    with pytest.raises(errors.MessageTooLongError):
        await fake.send_message(GROUP, "😀" * 2049, parse_mode=None)  # 4098 units


@pytest.mark.asyncio
async def test_length_is_counted_after_parsing_the_markup() -> None:
    fake = await started(FakeTelegramClient())

    await fake.send_message(GROUP, "<b>" + "x" * 4096 + "</b>", parse_mode="html")

    assert fake.sent[0].parse_mode == "html"


@pytest.mark.asyncio
async def test_empty_text_is_a_value_error() -> None:
    fake = await started(FakeTelegramClient())

    with pytest.raises(ValueError, match="cannot be empty"):
        await fake.send_message(GROUP, "")


@pytest.mark.asyncio
async def test_whitespace_only_text_is_refused_as_empty() -> None:
    fake = await started(FakeTelegramClient())

    with pytest.raises(errors.MessageEmptyError):
        await fake.send_message(GROUP, " \n ", parse_mode=None)


@pytest.mark.asyncio
async def test_digit_string_chat_is_taken_for_a_phone_number() -> None:
    fake = await started(FakeTelegramClient())

    with pytest.raises(ValueError, match="phone number as a bot"):
        await fake.send_message("-1001234567890", "hi")


@pytest.mark.asyncio
async def test_default_parse_mode_is_markdown_like_telethon() -> None:
    fake = await started(FakeTelegramClient())

    await fake.send_message(GROUP, "**hi**")

    assert fake.sent[0].parse_mode == "md"


@pytest.mark.asyncio
async def test_enforced_limits_answer_a_flood_wait_for_a_too_fast_second_message() -> None:
    fake = await started(FakeTelegramClient(enforce_rate_limits=True))

    await fake.send_message(GROUP, "one")
    with pytest.raises(errors.FloodWaitError) as caught:
        await fake.send_message(GROUP, "two")

    assert caught.value.seconds == 1
    assert fake.flood_waits == 1
    assert fake.texts == ["one"]


@pytest.mark.asyncio
async def test_enforced_limits_leave_other_chats_alone() -> None:
    fake = await started(FakeTelegramClient(enforce_rate_limits=True))

    await fake.send_message(GROUP, "one")
    await fake.send_message(42, "elsewhere")

    assert fake.flood_waits == 0


@pytest.mark.asyncio
async def test_flood_wait_on_a_scaled_clock_names_telegram_seconds() -> None:
    # Per-chat and global limits out of the way; 20 per (scaled) minute in a group.
    limits = TelegramRateLimits(
        per_chat_per_second=1e6, global_per_second=1e6, per_group_per_minute=20, time_scale=0.01
    )
    fake = await started(FakeTelegramClient(enforce_rate_limits=True, rate_limits=limits))
    for n in range(20):
        await fake.send_message(GROUP, f"m{n}")

    with pytest.raises(errors.FloodWaitError) as caught:
        await fake.send_message(GROUP, "21st within the minute")

    assert 50 <= caught.value.seconds <= 60  # the rest of the minute, in Telegram seconds


@pytest.mark.asyncio
async def test_fail_next_raises_the_scripted_error_for_that_chat_only() -> None:
    fake = await started(FakeTelegramClient())
    fake.fail_next(errors.FloodWaitError(request=None, capture=3), chat=GROUP)

    await fake.send_message(42, "unaffected")
    with pytest.raises(errors.FloodWaitError):
        await fake.send_message(GROUP, "refused")
    await fake.send_message(GROUP, "accepted")  # a wait of 3 s is not remembered

    assert fake.texts == ["unaffected", "accepted"]
    assert [failure.chat for failure in fake.errors] == [GROUP]


@pytest.mark.asyncio
async def test_injected_message_is_a_real_new_message_event() -> None:
    fake = await started(FakeTelegramClient())
    seen: list[events.NewMessage.Event] = []

    async def handler(event: events.NewMessage.Event) -> None:
        seen.append(event)

    fake.add_event_handler(handler, events.NewMessage(incoming=True))
    await fake.inject_message_async(GROUP, "/status", sender_id=7, sender_name="Ada L")

    [event] = seen
    assert (event.chat_id, event.sender_id, event.raw_text) == (GROUP, 7, "/status")
    assert (await event.get_sender()).first_name == "Ada"
    assert event.is_group


@pytest.mark.asyncio
async def test_injected_topic_message_carries_telegrams_reply_header() -> None:
    fake = await started(FakeTelegramClient())

    plain = await fake.inject_message_async(GROUP, "in topic", topic_id=7)
    reply = await fake.inject_message_async(GROUP, "reply in topic", topic_id=7, reply_to=99)

    assert (plain.reply_to.forum_topic, plain.reply_to.reply_to_msg_id) == (True, 7)
    assert (reply.reply_to.reply_to_msg_id, reply.reply_to.reply_to_top_id) == (99, 7)


@pytest.mark.asyncio
async def test_event_builder_filters_apply_to_injected_messages() -> None:
    fake = await started(FakeTelegramClient())
    seen: list[str] = []

    async def handler(event: events.NewMessage.Event) -> None:
        seen.append(event.raw_text)

    fake.add_event_handler(handler, events.NewMessage(pattern=r"/deploy"))
    await fake.inject_message_async(GROUP, "hello")
    await fake.inject_message_async(GROUP, "/deploy now")

    assert seen == ["/deploy now"]


@pytest.mark.asyncio
async def test_inject_before_connecting_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="not connected"):
        FakeTelegramClient().inject_message(GROUP, "/status")


@pytest.mark.asyncio
async def test_wait_for_sent_on_the_sending_loop_points_to_the_async_version() -> None:
    fake = await started(FakeTelegramClient())

    with pytest.raises(RuntimeError, match="wait_for_sent_async"):
        fake.wait_for_sent(1)


def test_wait_for_sent_from_another_thread_sees_messages_of_a_loop_thread() -> None:
    fake = FakeTelegramClient()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:

        async def send() -> None:
            await fake.start(bot_token=TOKEN)
            await fake.send_message(GROUP, "from the loop thread")

        asyncio.run_coroutine_threadsafe(send(), loop).result(5)

        [sent] = fake.wait_for_sent(1, timeout=5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()

    assert sent.text == "from the loop thread"


def test_wait_for_sent_timeout_says_what_arrived() -> None:
    fake = FakeTelegramClient()

    with pytest.raises(TimeoutError, match=r"expected 1 sent messages within 0\.01s, 0 arrived"):
        fake.wait_for_sent(1, timeout=0.01)


@pytest.mark.asyncio
async def test_disconnect_of_one_sharer_keeps_the_fake_connected_for_the_other() -> None:
    fake = FakeTelegramClient()
    await fake.start(bot_token=TOKEN)
    await fake.start(bot_token=TOKEN)

    await fake.disconnect()
    still = fake.is_connected()
    await fake.disconnect()

    assert (still, fake.is_connected()) == (True, False)


def test_repr_shows_no_api_hash() -> None:
    fake = FakeTelegramClient(api_hash="very-secret-hash")

    assert "very-secret-hash" not in repr(fake)


def test_fake_shared_by_two_loops_runs_each_handler_on_its_own_loop() -> None:
    fake = FakeTelegramClient()
    loops = [asyncio.new_event_loop() for _ in range(2)]
    threads = [threading.Thread(target=loop.run_forever, daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    ran_on: list[asyncio.AbstractEventLoop] = []

    async def handler(event: events.NewMessage.Event) -> None:
        ran_on.append(asyncio.get_running_loop())

    async def subscribe() -> None:
        await fake.start(bot_token=TOKEN)
        fake.add_event_handler(handler, events.NewMessage)

    try:
        for loop in loops:
            asyncio.run_coroutine_threadsafe(subscribe(), loop).result(5)

        fake.inject_message(GROUP, "/status")
    finally:
        for loop, thread in zip(loops, threads, strict=True):
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()

    assert sorted(map(id, ran_on)) == sorted(map(id, loops))


def test_threads_sharing_one_fake_never_get_past_a_full_window_together() -> None:
    # One message per 10 s in a chat: of many sends racing from several threads (each on
    # its own event loop), exactly one may be accepted. (Without the check and the count
    # in one locked step, about half the runs let two through.)
    fake = FakeTelegramClient(
        enforce_rate_limits=True, rate_limits=TelegramRateLimits(time_scale=10.0)
    )
    fake.flood_sleep_threshold = 0
    asyncio.run(fake.connect())
    threads, tries = 4, 50
    start = threading.Barrier(threads)
    floods = [0] * threads

    def hammer(index: int) -> None:
        async def sends() -> None:
            start.wait()
            for i in range(tries):
                try:
                    await fake.send_message(1000, f"{index}-{i}")
                except errors.FloodWaitError:
                    floods[index] += 1

        asyncio.run(sends())

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
    finally:
        sys.setswitchinterval(previous)

    assert len(fake.sent) == 1
    assert sum(floods) == threads * tries - 1
