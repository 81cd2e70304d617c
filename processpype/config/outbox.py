"""``OutboxConfig``: the ``communications.outbox`` section (a Redis outbox shared by processes).

With an outbox, ``Notifier.send`` puts each message in a Redis stream and returns once
Redis has it; ``processpype-notify worker`` processes deliver it with the configured
backends. The URL's password is masked in every repr, dump, log line and error
(``OutboxConfig.display_url``).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from processpype.config._base import ConfigurationModel
from processpype.foundation._masking import mask_url_password

__all__ = ["OutboxConfig", "mask_url_password"]

_SCHEMES = ("redis", "rediss", "unix")
_REDIS_BULK_LIMIT = 512 * 1024 * 1024
"""Redis's proto-max-bulk-len default: the largest string value it accepts."""


class OutboxConfig(ConfigurationModel):
    """A Redis outbox: producers enqueue, ``processpype-notify worker`` processes deliver.

    Delivery is at least once: an entry is acknowledged only once its outcome is final,
    an entry left by a crashed worker is claimed by another after ``claim_after``
    seconds, and after ``max_deliveries`` tries it moves to the dead-letter stream.
    """

    url: SecretStr = Field(
        description="Redis URL, e.g. redis://:password@host:6379/0 (masked: it may hold a password)"
    )
    name: str = Field(
        default="processpype",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of every Redis key of this outbox (one outbox per name)",
    )
    claim_after: float = Field(
        default=60.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds an entry may stay unacknowledged before another worker claims "
        "it (also the wait before a failed delivery is tried again)",
    )
    max_deliveries: int = Field(
        default=5, ge=1, description="Tries per entry before it moves to the dead letters"
    )
    fallback: Literal["error", "direct"] = Field(
        default="error",
        description="When Redis is unreachable: error fails the send at once, direct "
        "delivers in this process (the report says so)",
    )
    connect_timeout: float = Field(
        default=2.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a producer waits for Redis before failing",
    )
    outcome_ttl: float = Field(
        default=600.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds the outcome of a message sent with wait_for_delivery is kept",
    )
    max_entry_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        le=_REDIS_BULK_LIMIT,
        description="Largest outbox entry (the message as JSON, attachments base64 encoded: "
        "about 4/3 of their size); a larger message fails at once, nothing queued "
        "(default 64 MiB; Redis refuses values over 512 MB)",
    )
    lease_time: float = Field(
        default=10.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds the update-connection lease of a receiving bot lasts unless "
        "renewed (a crashed holder is replaced within this time)",
    )

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        try:
            scheme = urlsplit(text).scheme
        except ValueError:
            scheme = ""
        if scheme not in _SCHEMES:
            # The value is not echoed: it may hold a password.
            raise ValueError(
                "must be a Redis URL starting with redis://, rediss:// or unix:// "
                "(e.g. redis://localhost:6379/0)"
            )
        return SecretStr(text)

    @property
    def display_url(self) -> str:
        """The URL with its password masked: safe in logs, errors and CLI output."""
        return mask_url_password(self.url.get_secret_value())
