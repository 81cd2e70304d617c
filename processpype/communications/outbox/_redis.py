"""The one place the outbox talks to redis-py: clients, key names, entries, errors.

Key layout for an outbox named ``N``::

    N:outbox                 the stream of messages to deliver (one entry per backend)
    N:dead                   dead letters: entries that ran out of deliveries, with the error
    N:errors                 hash: entry id -> the last error of its failed delivery
    N:outcome:<key>          stream of final outcomes of a message sent with wait_for_delivery
    N:limit:<bot>:...        sorted sets of the shared Telegram limiter
    N:lease:<backend>        the lease of a receiving backend's update connection
    N:incoming:<backend>     stream of incoming messages, read by every Notifier
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from processpype.foundation._masking import register_secrets
from processpype.foundation.errors import OutboxUnavailableError, describe_error

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ModuleNotFoundError as exc:  # pragma: no cover - the minimal environment tests it
    from processpype.communications.backends._requires import unavailable

    raise unavailable(exc, "outbox", "redis", "redis") from None
from processpype.communications.delivery import DeliveryResult
from processpype.config.outbox import OutboxConfig
from processpype.foundation.models import OutgoingMessage

__all__ = [
    "GROUP",
    "OutboxKeys",
    "RedisError",
    "connect",
    "decode_message",
    "encode_message",
    "is_unavailable",
    "outcome_fields",
    "outcome_result",
    "unavailable_error",
]

GROUP = "workers"
"""The consumer group every worker of an outbox reads with."""

Redis = Any
"""A ``redis.asyncio.Redis`` client. Typed loosely: redis-py types stream replies as wide
unions (bytes, str, int, ...) that decode_responses=True narrows to str at run time."""


class OutboxKeys:
    """The Redis key names of one outbox."""

    __slots__ = ("dead", "errors", "name", "stream")

    def __init__(self, name: str) -> None:
        self.name = name
        self.stream = f"{name}:outbox"
        self.dead = f"{name}:dead"
        self.errors = f"{name}:errors"

    def outcome(self, key: str) -> str:
        """The stream of final outcomes of the message whose idempotency key is ``key``."""
        return f"{self.name}:outcome:{key}"

    def lease(self, backend: str) -> str:
        """The lease key of ``backend``'s update connection."""
        return f"{self.name}:lease:{backend}"

    def incoming(self, backend: str) -> str:
        """The stream of messages ``backend`` received."""
        return f"{self.name}:incoming:{backend}"

    def seen(self, backend: str) -> str:
        """Prefix of the keys that remember which updates were already published."""
        return f"{self.name}:seen:{backend}:"

    def limit(self, bot: str) -> str:
        """Prefix of the shared limiter's windows for one bot."""
        return f"{self.name}:limit:{bot}:"


def connect(
    config: OutboxConfig,
    *,
    socket_timeout: float | None = None,
    retries: int = 0,
) -> Redis:
    """A client for the outbox's Redis (no connection is made until the first command).

    ``retries=0`` fails fast (producers); redis-py's default of 3 retries with backoff
    would hold a sender for seconds when Redis is down.
    """
    client: Redis = aioredis.Redis.from_url(
        config.url.get_secret_value(),
        socket_connect_timeout=config.connect_timeout,
        socket_timeout=socket_timeout,
        retry=Retry(NoBackoff(), retries),
        decode_responses=True,
        client_name=None,
    )
    password = _password(config)
    if password:
        # Masked in every log record of ours and redis-py's while this client lives.
        register_secrets(client, [password])
    return client


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means Redis cannot be reached (down, refused, timed out, loading)."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError):
        return True
    # A server just restarted answers LOADING until its data set is in memory.
    return isinstance(exc, RedisError) and str(exc).startswith("Redis is loading")


def unavailable_error(config: OutboxConfig, exc: BaseException) -> OutboxUnavailableError:
    """An ``OutboxUnavailableError`` naming the URL without its password."""
    url = config.display_url
    detail = describe_error(exc)
    password = _password(config)
    if password:
        detail = detail.replace(password, "***")
    return OutboxUnavailableError(f"the outbox at {url} is unreachable: {detail}", url=url)


def _password(config: OutboxConfig) -> str | None:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(config.url.get_secret_value()).password
    except ValueError:
        return None
    return unquote(password) if password else None


def encode_message(message: OutgoingMessage) -> str:
    """``message`` as JSON, attachments' bytes included (unknown metadata types become text)."""
    try:
        return message.model_dump_json(context=_WITH_DATA)
    except PydanticSerializationError:  # a metadata value pydantic cannot serialise
        return json.dumps(
            to_jsonable_python(message, fallback=str, context=_WITH_DATA), separators=(",", ":")
        )


_WITH_DATA = {"attachment_data": True}
"""Serialisation context: a queued message carries its files' bytes (base64)."""


def decode_message(text: str) -> OutgoingMessage:
    """The message ``encode_message`` wrote."""
    return OutgoingMessage.model_validate_json(text)


def entry_fields(
    backend: str, message: OutgoingMessage, key: str, *, outcome: bool, encoded: str | None = None
) -> Mapping[str, Any]:
    """The fields of one outbox entry: which backend, the message, its stable id.

    ``encoded``: the message as ``encode_message`` wrote it, when already done.
    """
    text = encode_message(message) if encoded is None else encoded
    fields: dict[str, Any] = {"backend": backend, "key": key, "message": text}
    if outcome:
        fields["outcome"] = "1"
    return fields


def outcome_fields(result: DeliveryResult) -> dict[str, str]:
    """The fields of a final-outcome entry: every field of ``result`` a sender reads back."""
    fields = {
        "backend": result.backend,
        "status": result.status,
        "error": result.error or "",
        "attempts": str(result.attempts),
    }
    # Tuples of text as JSON lists: a warning may hold any character, a comma included.
    if result.warnings:
        fields["warnings"] = json.dumps(list(result.warnings))
    if result.reference:
        fields["reference"] = json.dumps(list(result.reference))
    return fields


def outcome_result(fields: Mapping[str, str]) -> DeliveryResult | None:
    """The ``DeliveryResult`` ``outcome_fields`` wrote (None for an entry it did not write)."""
    backend = fields.get("backend")
    status = fields.get("status")
    if not backend or status not in ("delivered", "failed", "skipped"):
        return None
    return DeliveryResult.model_validate(
        {
            "backend": backend,
            "status": status,
            "error": fields.get("error") or None,
            "attempts": int(fields.get("attempts") or 0),
            "warnings": _text_tuple(fields.get("warnings")),
            "reference": _text_tuple(fields.get("reference")),
        }
    )


def _text_tuple(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        items = json.loads(text)
    except ValueError:
        return (text,)
    return tuple(str(item) for item in items) if isinstance(items, list) else (str(items),)
