"""Ask a question in a chat and wait for the answer: ``Question``, ``Answer``, ``ask_on``.

``Notifier.ask``/``aask`` build a ``Question`` (validated in the caller's thread), then
``ask_on`` picks the first backend of the label that can ask (``supports_asking``: a
Telegram backend that listens) and hands it the question. The backend posts it with one
button per choice, waits for the first authorized press or text reply, and edits the
question to show the answer, or that nobody answered in time. The texts of those edits
are made here, so that every backend words them alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from processpype.foundation.errors import describe_error
from processpype.foundation.models import OutgoingMessage

if TYPE_CHECKING:
    from processpype.communications.dispatcher import CommunicationDispatcher

__all__ = ["Answer", "Question", "answered_text", "ask_on", "timed_out_text"]


class Question(BaseModel):
    """A question with a fixed set of answers, for the chat of ``label``."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(min_length=1, description="The question")
    choices: tuple[str, ...] = Field(min_length=1, description="The possible answers")
    label: str = Field(default="default", min_length=1, description="Routing label")
    timeout: float = Field(gt=0, allow_inf_nan=False, description="Seconds to wait for an answer")

    @field_validator("choices")
    @classmethod
    def _distinct_choices(cls, choices: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for choice in choices:
            if not choice.strip():
                raise ValueError("a choice cannot be empty")
            key = choice.strip().casefold()
            if key in seen:
                raise ValueError(f"choice {choice!r} is given twice (choices ignore case)")
            seen.add(key)
        return choices

    @classmethod
    def build(cls, text: str, *, choices: Sequence[str], label: str, timeout: float) -> Question:
        """A validated question; ``ValueError``/``TypeError`` name the bad argument."""
        if isinstance(choices, str):
            raise TypeError("choices must be a list of strings, not one string")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
        return cls(text=text, choices=tuple(choices), label=label, timeout=float(timeout))

    def match(self, reply: str) -> str | None:
        """The choice ``reply`` names (ignoring case and surrounding spaces), or None."""
        wanted = reply.strip().casefold()
        return next((c for c in self.choices if c.strip().casefold() == wanted), None)

    def message(self) -> OutgoingMessage:
        """The message that carries the question."""
        return OutgoingMessage(
            message=self.text, label=self.label, source="processpype.ask", subject=self.text
        )


class Answer(BaseModel):
    """Who answered a ``Question``, with which choice, and how."""

    model_config = ConfigDict(frozen=True)

    choice: str = Field(description="The choice given")
    sender: str | None = Field(default=None, description="Display name of who answered")
    sender_id: str | None = Field(default=None, description="Backend id of who answered")
    via: Literal["button", "reply"] = Field(description="A button press or a text reply")


def answered_text(question: Question, answer: Answer) -> str:
    """The question as it reads once answered: the answer and who gave it."""
    who = answer.sender or (f"user {answer.sender_id}" if answer.sender_id else "someone")
    return f"{question.text}\n\N{WHITE HEAVY CHECK MARK} {answer.choice} (answered by {who})"


def timed_out_text(question: Question) -> str:
    """The question as it reads when nobody answered within its timeout."""
    return f"{question.text}\n\N{HOURGLASS} no answer within {question.timeout:g}s"


async def ask_on(dispatcher: CommunicationDispatcher, question: Question) -> Answer | None:
    """Ask ``question`` on the first backend of its label that can ask; None on timeout.

    Raises ``ValueError`` naming the label's backends when none of them can ask.
    """
    targets = dispatcher.targets(question.label)
    askers = [c for c in targets if c.supports_asking]
    if not askers:
        names = ", ".join(f"{c.name} ({type(c).__name__})" for c in targets) or "none"
        raise ValueError(
            f"no backend of label {question.label!r} can ask a question (backends: {names}); "
            "asking needs a Telegram backend with listen_to_commands: true and a chat for "
            "the label"
        )
    communicator = askers[0]
    if not communicator.is_started and not await dispatcher.start_one(communicator):
        error = dispatcher.start_errors().get(communicator.name)
        why = describe_error(error) if error is not None else "unknown error"
        raise RuntimeError(
            f"{communicator.name}: the backend did not start, so it cannot ask: {why}"
        )
    return await communicator.ask(question)
