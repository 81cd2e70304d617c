"""The Telegram backend's interactive side: editing sent messages, and asking questions.

Editing: every queued message is a ``TrackedJob``, which keeps the id Telegram gave each
piece it posted; ``deliver`` puts those ids in the result's ``reference``. An edit is
another job in the same chat lane, so the scheduler sends it within the chat's rate
limits like any message (and a flood wait pauses it like one). Piece ``i`` of the new
text edits piece ``i`` of the old message; extra pieces are posted after it, and pieces
the new text no longer needs are deleted. An edit that changes nothing counts as done.

Asking: ``ask`` posts the question with one inline button per choice, then waits for the
first press of an authorized sender (a ``CallbackQuery`` event), or a text reply in the
chat equal to a choice (from the backend's ``NewMessage`` handler), up to the timeout;
then it edits the question to show the answer and who gave it (or that time ran out),
which also removes the buttons. A press by anyone else gets a "not allowed" answer and
changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telethon import Button, errors, events

from processpype.communications.ask import Answer, Question, answered_text, timed_out_text
from processpype.communications.backends._telegram_files import FileChunk
from processpype.communications.backends._telegram_limits import forget_flood_memory
from processpype.communications.backends._telegram_queue import ChatTarget, Job
from processpype.communications.backends._telegram_text import Chunk
from processpype.communications.delivery import DeliveryResult
from processpype.foundation.errors import SendError
from processpype.foundation.models import IncomingMessage, OutgoingMessage

if TYPE_CHECKING:
    from processpype.communications.backends.telegram import TelegramCommunicator
    from processpype.config.models import TelegramChatConfig

__all__ = ["TelegramInteractions", "TrackedJob", "remember_piece", "with_reference"]

logger = logging.getLogger("processpype.communications.telegram")

_DATA_PREFIX = "pp:"
_BUTTONS_PER_ROW = 3
NOT_ALLOWED = "You are not allowed to answer this question."
CLOSED = "This question is closed."


_ANSWER_TIMEOUT = 5.0


async def _answer(event: Any, message: str | None = None, *, alert: bool = False) -> None:
    """Answer a button press (one request), within a deadline: a silent link never holds it."""
    async with asyncio.timeout(_ANSWER_TIMEOUT):
        await event.answer(message, alert=alert)


class TrackedJob(Job):
    """A queued message that remembers the ids of its posted pieces.

    ``edit_ids`` (the pieces of an earlier message) makes it an edit of that message;
    ``buttons`` puts an inline keyboard under its last piece.
    """

    __slots__ = ("buttons", "edit_ids", "piece_ids")

    def __init__(
        self,
        message: OutgoingMessage,
        target: ChatTarget,
        chunks: list[Chunk],
        outcome: asyncio.Future[DeliveryResult],
    ) -> None:
        super().__init__(message, target, chunks, outcome)
        self.piece_ids: list[int | None] = [None] * len(chunks)
        self.edit_ids: tuple[int, ...] = ()
        self.buttons: Any = None

    @property
    def custom(self) -> bool:
        """True when sending it takes more than a plain ``send_message`` per piece."""
        return bool(self.edit_ids) or self.buttons is not None


def remember_piece(job: Job, sent: Any) -> None:
    """Keep the id Telegram gave the piece ``job`` just posted."""
    if isinstance(job, TrackedJob):
        message_id = getattr(sent, "id", None)
        if isinstance(message_id, int):
            job.piece_ids[job.next_chunk] = message_id


def with_reference(result: DeliveryResult, job: Job) -> DeliveryResult:
    """``result`` with the ids of the posted pieces as its reference, when all are known.

    Only the pieces that carry the text count: the text's own messages, or the file
    whose caption it is (the first file of a message of files only). An edit changes
    that text and leaves every file as it was.
    """
    if result.status != "delivered" or not isinstance(job, TrackedJob):
        return result
    ids = _text_piece_ids(job)
    if not ids or any(i is None for i in ids):
        return result
    return result.model_copy(update={"reference": tuple(str(i) for i in ids)})


def _text_piece_ids(job: TrackedJob) -> list[int | None]:
    pieces = list(zip(job.chunks, job.piece_ids, strict=True))
    texts = [i for chunk, i in pieces if not isinstance(chunk, FileChunk) or chunk.text]
    if texts:
        return texts
    return [pieces[0][1]] if pieces else []  # files only: the first one's caption


@dataclass
class _Pending:
    """A question waiting for its answer."""

    question: Question
    target: ChatTarget
    chat: TelegramChatConfig
    answer: asyncio.Future[Answer]
    message_ids: tuple[int, ...] = field(default=())


class TelegramInteractions:
    """Edits and questions for one ``TelegramCommunicator`` (on its loop)."""

    def __init__(self, backend: TelegramCommunicator) -> None:
        self._backend = backend
        self._pending: dict[str, _Pending] = {}
        self._client: Any = None

    # -- wiring -------------------------------------------------------------------------

    def listen(self, client: Any) -> None:
        """Receive button presses on ``client`` (the backend listens for commands)."""
        client.add_event_handler(self._on_callback, events.CallbackQuery())
        self._client = client

    def stop(self, client: Any) -> None:
        """Stop receiving presses; questions still waiting fail."""
        if self._client is not None:
            try:
                client.remove_event_handler(self._on_callback)
            except Exception as exc:
                logger.debug("%s: removing the button handler failed: %s", self._backend.name, exc)
            self._client = None
        for pending in self._pending.values():
            if not pending.answer.done():
                pending.answer.set_exception(
                    SendError(
                        f"{self._backend.name}: the backend stopped while a question waited "
                        "for its answer",
                        backend=self._backend.name,
                        attempts=0,
                    )
                )
        self._pending.clear()

    # -- sending and editing through the queue ---------------------------------------------

    async def send_piece(self, client: Any, job: TrackedJob, chunk: Chunk) -> None:
        """Post or edit one piece of ``job`` (an edit, or a message with buttons)."""
        index = job.next_chunk
        entity = job.target.entity
        last = index == len(job.chunks) - 1
        buttons = job.buttons if last else None
        if index < len(job.edit_ids):
            message_id = job.edit_ids[index]
            # Not modified: it already reads like this, the edit has nothing to do.
            with contextlib.suppress(errors.MessageNotModifiedError):
                await client.edit_message(
                    entity,
                    message_id,
                    chunk.text,
                    parse_mode=chunk.parse_mode,
                    formatting_entities=chunk.entities,
                    link_preview=self._backend._tg_config.link_preview,
                    buttons=buttons,
                )
            job.piece_ids[index] = message_id
        else:
            sent = await client.send_message(
                entity,
                chunk.text,
                # The General topic (id 1) takes plain posts, not replies to message 1.
                reply_to=job.target.topic_id if job.target.topic_id != 1 else None,
                parse_mode=chunk.parse_mode,
                formatting_entities=chunk.entities,
                link_preview=self._backend._tg_config.link_preview,
                buttons=buttons,
            )
            remember_piece(job, sent)
        surplus = job.edit_ids[len(job.chunks) :]
        if last and surplus:
            # The new text needs fewer pieces than the old one: remove the rest.
            try:
                await client.delete_messages(entity, list(surplus))
            except errors.RPCError as exc:
                if isinstance(exc, errors.FloodError):
                    # telethon would otherwise refuse every later deletion, in any chat,
                    # until it ends.
                    forget_flood_memory(client, exc)
                logger.warning(
                    "%s: could not delete %d piece(s) an edit made superfluous: %s",
                    self._backend.name,
                    len(surplus),
                    self._backend._scrubbed(exc),
                )

    async def _queue_job(
        self, message: OutgoingMessage, *, edit_ids: tuple[int, ...] = (), buttons: Any = None
    ) -> tuple[DeliveryResult, TrackedJob | None]:
        backend = self._backend
        target, reason = backend._route(message.label)
        if target is None:
            return DeliveryResult.skipped(backend.name, reason), None
        job = backend._make_job(message, target)
        assert isinstance(job, TrackedJob)
        job.edit_ids = edit_ids
        job.buttons = buttons
        queue = backend._queue
        assert queue is not None  # _make_job checked it
        await queue.put(job, backend._tg_config.send_timeout)
        result = await asyncio.shield(job.outcome)  # with the job's warnings (a max_parts cut)
        return with_reference(result, job), job

    async def edit(self, reference: tuple[str, ...], message: OutgoingMessage) -> DeliveryResult:
        """Edit the message whose pieces are ``reference`` into ``message``."""
        try:
            ids = tuple(int(part) for part in reference)
        except ValueError:
            ids = ()
        if not ids:
            raise SendError(
                f"{self._backend.name}: {reference!r} is not the reference of a Telegram "
                "message (message ids)",
                backend=self._backend.name,
                attempts=0,
                permanent=True,
            )
        # The text (or caption) changes; the files stay as they were posted.
        text_only = (
            message.model_copy(update={"attachments": []}) if message.attachments else message
        )
        result, _ = await self._queue_job(text_only, edit_ids=ids)
        return result

    # -- questions ------------------------------------------------------------------------

    async def ask(self, question: Question) -> Answer | None:
        """Post ``question`` with buttons, wait for its answer, and show the outcome."""
        backend = self._backend
        if not backend.supports_asking or self._client is None:
            raise SendError(
                f"{backend.name}: asking needs listen_to_commands: true (the backend must "
                "receive button presses and replies)",
                backend=backend.name,
                attempts=0,
                permanent=True,
            )
        target, reason = backend._route(question.label)
        if target is None:
            raise SendError(f"{backend.name}: cannot ask: {reason}", backend=backend.name)
        chat = backend._tg_config.chats[target.label]
        if not chat.command_authorized:
            raise SendError(
                f"{backend.name}: nobody could answer in the chat of label {target.label!r}: "
                f"set chats.{target.label}.command_authorized: true",
                backend=backend.name,
                attempts=0,
                permanent=True,
            )
        token = secrets.token_urlsafe(6)
        buttons = [
            Button.inline(choice, f"{_DATA_PREFIX}{token}:{index}".encode())
            for index, choice in enumerate(question.choices)
        ]
        rows = [buttons[i : i + _BUTTONS_PER_ROW] for i in range(0, len(buttons), _BUTTONS_PER_ROW)]
        loop = asyncio.get_running_loop()
        pending = _Pending(question, target, chat, loop.create_future())
        # Registered before the post: a press can come the instant it appears.
        self._pending[token] = pending
        try:
            result, job = await self._queue_job(question.message(), buttons=rows)
            if result.status != "delivered" or job is None:
                raise SendError(
                    f"{backend.name}: the question was not posted: {result.error}",
                    backend=backend.name,
                    attempts=result.attempts,
                )
            pending.message_ids = tuple(i for i in job.piece_ids if i is not None)
            try:
                async with asyncio.timeout(question.timeout):
                    answer: Answer | None = await pending.answer
            except TimeoutError:
                answer = None
        finally:
            self._pending.pop(token, None)
        text = timed_out_text(question) if answer is None else answered_text(question, answer)
        outcome = question.message().model_copy(update={"message": text})
        problem: str | None
        try:
            edited = await self.edit(tuple(str(i) for i in pending.message_ids), outcome)
        except Exception as exc:  # the answer stands even if the question cannot show it
            problem = backend._scrubbed(exc)
        else:
            problem = edited.error if edited.status != "delivered" else None
        if problem:
            logger.warning(
                "%s: could not show the outcome of a question: %s", backend.name, problem
            )
        return answer

    def _allowed(self, pending: _Pending, sender_id: int | None) -> bool:
        allowed = pending.chat.allowed_sender_ids
        return not allowed or sender_id in allowed

    def offer_reply(self, label: str, incoming: IncomingMessage) -> bool:
        """A text message from the chat of ``label``: does it answer a waiting question?"""
        if not self._pending:
            return False
        target = self._backend._targets.get(label)
        if target is None:
            return False
        topic = incoming.metadata.get("topic_id")
        sender_id = int(incoming.sender_id) if incoming.sender_id is not None else None
        for pending in self._pending.values():
            if pending.answer.done() or pending.target.key != target.key:
                continue
            if pending.target.topic_id not in (None, topic) and not (
                pending.target.topic_id == 1 and topic is None
            ):
                continue
            choice = pending.question.match(incoming.text)
            if choice is None or not self._allowed(pending, sender_id):
                continue
            pending.answer.set_result(
                Answer(
                    choice=choice, sender=incoming.sender, sender_id=incoming.sender_id, via="reply"
                )
            )
            return True
        return False

    async def _on_callback(self, event: Any) -> None:
        """telethon ``CallbackQuery`` handler: an answer, a refusal, or not ours."""
        try:
            data = bytes(event.data or b"").decode("utf-8", "replace")
            if not data.startswith(_DATA_PREFIX):
                return  # another handler's button
            token, _, index_text = data[len(_DATA_PREFIX) :].partition(":")
            pending = self._pending.get(token)
            if pending is None or pending.answer.done():
                await _answer(event, CLOSED)
                return
            sender_id = event.sender_id
            if event.chat_id != pending.target.entity and isinstance(pending.target.entity, int):
                await _answer(event, NOT_ALLOWED, alert=True)
                return
            if not self._allowed(pending, sender_id):
                logger.info(
                    "%s: refused an answer from sender %s (not in allowed_sender_ids)",
                    self._backend.name,
                    sender_id,
                )
                await _answer(event, NOT_ALLOWED, alert=True)
                return
            try:
                choice = pending.question.choices[int(index_text)]
            except (ValueError, IndexError):
                await _answer(event, CLOSED)
                return
            sender = await self._backend._sender_name(event)
            if not pending.answer.done():
                pending.answer.set_result(
                    Answer(
                        choice=choice,
                        sender=sender,
                        sender_id=str(sender_id) if sender_id is not None else None,
                        via="button",
                    )
                )
            await _answer(event, f"Answered: {choice}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.error(
                "%s: handling a button press failed: %s",
                self._backend.name,
                self._backend._scrubbed(exc),
            )
            with contextlib.suppress(Exception):
                await _answer(event)
