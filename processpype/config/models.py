"""Pydantic configuration models: the communications section and every built-in backend.

Built-in backends are told apart by their ``type`` key. Their configs are strict: an
unknown key (a typo such as ``lables:``) is an error. Any other ``type`` validates as the
base ``CommunicatorBackendConfig``, which keeps its extra keys for a third-party backend.
Secrets are ``SecretStr``: masked in ``repr``, ``str`` and JSON dumps.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parseaddr
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)

from processpype.config._base import ConfigurationModel
from processpype.config.outbox import OutboxConfig
from processpype.foundation._masking import mask_value
from processpype.foundation.models import MessageSeverity

__all__ = [
    "BUILTIN_BACKENDS",
    "BUILTIN_BACKEND_TYPES",
    "BackendConfig",
    "BuiltinBackendType",
    "CommunicationsConfig",
    "CommunicatorBackendConfig",
    "ConfigurationModel",
    "ConsoleCommunicatorConfig",
    "DiscordCommunicatorConfig",
    "EmailCommunicatorConfig",
    "OutboxConfig",
    "SlackCommunicatorConfig",
    "TelegramChatConfig",
    "TelegramCommunicatorConfig",
    "WebhookCommunicatorConfig",
]


def _split_addresses(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class CommunicatorBackendConfig(ConfigurationModel):
    """Base configuration for a communicator backend instance.

    Used as is for third-party backend types, whose extra keys are kept (read them with
    ``config.model_extra``).
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1, description='Backend type: "telegram", "email", ...')
    enabled: bool = Field(default=True, description="Whether this backend is active")
    labels: list[str] = Field(
        default_factory=lambda: ["default"],
        min_length=1,
        description="Labels this backend handles (cannot be empty)",
    )
    min_severity: MessageSeverity = Field(
        default=MessageSeverity.DEBUG,
        description="Messages below this severity never reach the backend",
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Third-party keys (``api_key``, a ``dsn`` with a password, a ``token`` in a list)
        # and free-form fields (a webhook ``body``) are masked by name, like ``check`` does.
        fields = type(self).model_fields
        for name, value in super().__repr_args__():
            field = fields.get(name) if isinstance(name, str) else None
            if field is None or field.annotation in (Any, "Any"):
                value = mask_value(value, name)
            yield name, value

    @field_validator("type")
    @classmethod
    def _type_not_a_typo(cls, value: str) -> str:
        if value in BUILTIN_BACKENDS:
            return value
        suggestion = _close_builtin_type(value)
        if suggestion is not None:
            # The registry reads this module's table: imported here, not at the top.
            from processpype.config.registry import backend_unavailable_reason

            # A registered or installed plugin of that name is no typo.
            if backend_unavailable_reason(value) is not None:
                raise ValueError(
                    f"unknown backend type {value!r}: did you mean {suggestion!r}? "
                    f"(built-in types: {', '.join(BUILTIN_BACKENDS)})"
                )
        return value

    @field_validator("labels")
    @classmethod
    def _labels_not_blank(cls, labels: list[str]) -> list[str]:
        for label in labels:
            if not label.strip():
                raise ValueError("a label cannot be empty")
        return labels

    @field_validator("min_severity", mode="before")
    @classmethod
    def _severity_any_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class _StrictBackendConfig(CommunicatorBackendConfig):
    model_config = ConfigDict(extra="forbid")


class _RetryingBackendConfig(_StrictBackendConfig):
    max_attempts: int = Field(default=3, ge=1, description="Tries per message, the first included")
    retry_base_delay: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="First retry delay in seconds; doubles on each retry",
    )
    max_retry_delay: float = Field(
        default=60.0,
        gt=0,
        allow_inf_nan=False,
        description="Longest wait between tries (caps backoff and Retry-After)",
    )
    attempt_timeout: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Longest one whole try may take, however the server trickles its "
        "answer (connect, send, read the reply); default: 3 x timeout",
    )

    def attempt_deadline(self) -> float:
        """Seconds one whole try may take: ``attempt_timeout``, else 3 x ``timeout``."""
        if self.attempt_timeout is not None:
            return self.attempt_timeout
        return 3.0 * float(getattr(self, "timeout", 10.0))


class _SplittingBackendConfig(_StrictBackendConfig):
    """A backend that cuts a long text into several messages (Telegram, Slack, Discord)."""

    max_parts: int = Field(
        default=10,
        ge=1,
        description="Messages one long text may become; the rest is cut, with a line "
        "saying how much",
    )


class TelegramChatConfig(ConfigurationModel):
    """One Telegram chat that a label routes to."""

    chat_id: str = Field(description="Numeric chat id (e.g. -1001234567890) or @username")
    topic_id: int | None = Field(default=None, gt=0, description="Forum topic id")
    command_authorized: bool = Field(default=False, description="Accept commands from this chat")
    active: bool = Field(default=True, description="Whether this chat is active")
    allowed_sender_ids: list[int] = Field(
        default_factory=list,
        description="Senders whose commands are accepted (empty: anyone in the chat)",
    )
    kind: Literal["private", "group", "channel"] | None = Field(
        default=None,
        description="Chat kind for rate limits; None infers it (negative ids are groups)",
    )

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat_id_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("chat_id")
    @classmethod
    def _chat_id_not_blank(cls, value: str) -> str:
        # A numeric id, an @username, or anything else telethon resolves (t.me links).
        value = value.strip()
        if not value:
            raise ValueError("chat_id cannot be empty")
        if any(char.isspace() for char in value):
            # No chat id, username or link holds a space: telethon would fail at send.
            raise ValueError(
                f"{value!r} is not a chat: use a numeric id (-1001234567890), an "
                "@username or a t.me link"
            )
        return value


class TelegramCommunicatorConfig(_SplittingBackendConfig):
    """Telegram bot backend (``type: telegram``, extra ``telegram``)."""

    type: Literal["telegram"] = "telegram"
    api_id: int = Field(gt=0, description="Telegram API ID")
    api_hash: SecretStr = Field(description="Telegram API hash")
    token: SecretStr = Field(description="Bot token")
    session_string: SecretStr = Field(
        default=SecretStr(""), description="Session string for auth persistence"
    )
    listen_to_commands: bool = Field(default=False, description="Enable incoming messages")
    chats: dict[str, TelegramChatConfig] = Field(
        default_factory=dict, description="Chat configurations keyed by label"
    )
    parse_mode: Literal["html", "markdown"] | None = Field(
        default=None, description="None sends plain text, so < and & are safe"
    )
    max_queue_size: int = Field(default=1000, ge=1, description="Messages waiting to be sent")
    send_timeout: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="How long send() waits for room in a full queue, and the requests "
        "of one message piece may take (a file: plus its upload time)",
    )
    stop_timeout: float = Field(
        default=10.0,
        ge=0,
        allow_inf_nan=False,
        description="How long stop() drains the queue before giving up",
    )
    session_path: str | None = Field(
        default=None, description="Where a file session lives (default: user data directory)"
    )
    per_chat_per_second: float = Field(
        default=1.0, gt=0, allow_inf_nan=False, description="Messages/s in one chat"
    )
    per_group_per_minute: int = Field(default=20, ge=1, description="Messages/min in one group")
    global_per_second: float = Field(
        default=30.0, gt=0, allow_inf_nan=False, description="Messages/s across chats"
    )
    max_attempts: int = Field(default=3, ge=1, description="Tries per chunk (flood waits excluded)")
    retry_base_delay: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="First retry delay in seconds; doubles on each retry",
    )
    connect_timeout: float = Field(
        default=15.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds that connecting, the auth-key exchange, the login and get_me "
        "may take in start(), and one reconnect",
    )
    max_flood_wait: float = Field(
        default=300.0,
        ge=0,
        allow_inf_nan=False,
        description="Longest flood wait (s) a message waits out; a longer one fails it",
    )
    persist_session: bool = Field(
        default=True,
        description="Send-only: keep the bot's login in an owner-only file between runs "
        "(false logs in again on every start, which risks login flood waits)",
    )
    max_command_age: float = Field(
        default=300.0,
        gt=0,
        allow_inf_nan=False,
        description="Incoming commands older than this (s) are dropped, not handled",
    )
    link_preview: bool = Field(default=False, description="Show link previews in messages")

    @field_validator("api_hash", "token")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        stripped = value.get_secret_value().strip()
        if not stripped:
            # Without a token telethon falls into an interactive phone login that reads
            # stdin and hangs a script: refuse it here, before any connection.
            raise ValueError("cannot be empty")
        # Stripped here, once: the value masked in logs is the value used.
        return value if stripped == value.get_secret_value() else SecretStr(stripped)

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if ":" not in value.get_secret_value():
            raise ValueError("does not look like a bot token ('<bot id>:<secret>' from @BotFather)")
        return value

    @model_validator(mode="after")
    def _every_label_has_a_chat(self) -> TelegramCommunicatorConfig:
        if "default" not in self.chats:
            missing = [label for label in self.labels if label not in self.chats]
            if missing:
                raise ValueError(
                    f"chats: no chat for label(s) {', '.join(map(repr, missing))}: add a chat "
                    "under each label's name, or a 'default' chat that takes every label"
                )
        return self


class EmailCommunicatorConfig(_RetryingBackendConfig):
    """SMTP email backend (``type: email``, extra ``email``).

    TLS: ``use_tls`` is implicit TLS (port 465), ``start_tls`` upgrades a plain
    connection (port 587). Setting only ``start_tls: true`` means STARTTLS; setting both
    to true explicitly is an error; both false sends in plain text.
    """

    type: Literal["email"] = "email"
    host: str = Field(default="localhost", min_length=1, description="SMTP host")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port")
    username: str = Field(default="", description="SMTP username")
    password: SecretStr = Field(default=SecretStr(""), description="SMTP password")
    from_address: str = Field(min_length=3, description="Sender email address")
    use_tls: bool = Field(default=True, description="Implicit TLS (port 465)")
    start_tls: bool = Field(default=False, description="Use STARTTLS after connecting (port 587)")
    default_recipients: list[str] = Field(
        default_factory=list, description="Default recipient addresses"
    )
    timeout: float = Field(
        default=30.0, gt=0, allow_inf_nan=False, description="Seconds for each network step"
    )
    validate_certs: bool = Field(default=True, description="Verify the server's certificate")
    cert_bundle: str | None = Field(default=None, description="CA file for private servers")
    local_hostname: str | None = Field(default=None, description="Name sent in EHLO")
    max_attachment_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=0,
        description="Largest total size of a message's attachments (default 20 MiB)",
    )

    @field_validator("default_recipients", mode="before")
    @classmethod
    def _split_recipients(cls, value: Any) -> Any:
        return _split_addresses(value)

    @field_validator("from_address", "default_recipients", "local_hostname")
    @classmethod
    def _no_line_breaks(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str) and ("\r" in item or "\n" in item):
                raise ValueError(f"{item!r} contains a line break")
        return value

    @field_validator("from_address")
    @classmethod
    def _from_is_an_address(cls, value: str) -> str:
        if "@" not in parseaddr(value)[1]:
            raise ValueError(
                f"{value!r} is not an email address "
                "(expected alerts@example.com or Alerts <alerts@example.com>)"
            )
        return value

    @field_validator("default_recipients")
    @classmethod
    def _recipients_are_addresses(cls, value: list[str]) -> list[str]:
        # Checked here, not at the first send: ``check`` refuses what ``send`` would.
        for index, item in enumerate(value):
            if "@" not in parseaddr(item)[1]:
                raise ValueError(
                    f"[{index}] {item!r} is not an email address "
                    "(expected ops@example.com or Ops <ops@example.com>)"
                )
        return value

    @model_validator(mode="after")
    def _resolve_tls_mode(self) -> EmailCommunicatorConfig:
        explicit = self.model_fields_set
        if self.use_tls and self.start_tls:
            if "use_tls" in explicit:
                raise ValueError(
                    "use_tls (implicit TLS, port 465) and start_tls (STARTTLS, port 587) "
                    "are both true: choose one"
                )
            # Only start_tls was written: the user means STARTTLS, not the reference's
            # default of implicit TLS on port 587.
            object.__setattr__(self, "use_tls", False)
        return self


class ConsoleCommunicatorConfig(_StrictBackendConfig):
    """Console backend (``type: console``): stdout by default, or JSON lines to ``path``."""

    type: Literal["console"] = "console"
    path: str | None = Field(default=None, description="Append JSON lines to this file")
    stream: Literal["stdout", "stderr"] = Field(default="stdout", description="Where to print")
    format: Literal["text", "json"] | None = Field(
        default=None, description="Line format; default text on a stream, json in a file"
    )


class WebhookCommunicatorConfig(_RetryingBackendConfig):
    """Generic JSON webhook (``type: webhook``, extra ``webhook``)."""

    type: Literal["webhook"] = "webhook"
    url: SecretStr = Field(description="Endpoint URL (masked: it often carries a token)")
    method: Literal["POST", "PUT", "PATCH"] = Field(default="POST", description="HTTP method")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Request headers")
    body: Any = Field(
        default=None,
        description="JSON template; strings may use {message}, {label}, {severity}, "
        "{subject}, {source}, {metadata[key]}, {attachments}; default: the message as JSON",
    )
    timeout: float = Field(
        default=10.0, gt=0, allow_inf_nan=False, description="Seconds for each network step"
    )
    attachments: Literal["omit", "base64", "multipart"] = Field(
        default="base64",
        description="How files travel: base64 in the JSON body, multipart/form-data "
        "(payload_json and files[n]), or omit (named in the result's warnings)",
    )

    @field_validator("method", mode="before")
    @classmethod
    def _method_upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class SlackCommunicatorConfig(_SplittingBackendConfig, _RetryingBackendConfig):
    """Slack incoming webhook (``type: slack``, extra ``webhook``)."""

    type: Literal["slack"] = "slack"
    url: SecretStr = Field(description="Incoming-webhook URL (masked)")
    timeout: float = Field(
        default=10.0, gt=0, allow_inf_nan=False, description="Seconds for each network step"
    )


class DiscordCommunicatorConfig(_SplittingBackendConfig, _RetryingBackendConfig):
    """Discord webhook (``type: discord``, extra ``webhook``)."""

    type: Literal["discord"] = "discord"
    url: SecretStr = Field(description="Webhook URL (masked)")
    username: str | None = Field(default=None, description="Override the webhook's name")
    timeout: float = Field(
        default=10.0, gt=0, allow_inf_nan=False, description="Seconds for each network step"
    )
    max_attachments: int = Field(
        default=10, ge=0, description="Files per message (Discord's limit is 10)"
    )
    max_attachment_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=0,
        description="Total size of a message's files (10 MiB; more on boosted servers)",
    )


# -- the built-in backend types: the one table --------------------------------------------


@dataclass(frozen=True)
class BuiltinBackendType:
    """One built-in backend type: its config model, its communicator and what it needs."""

    config: type[CommunicatorBackendConfig]
    """The config model that validates a backend of this type."""
    communicator: str
    """The communicator class as ``"module:Class"``, imported when one is first built."""
    package: str | None = None
    """Import name of the optional package it needs (None: it needs none)."""
    distribution: str = ""
    """The distribution that provides ``package``, as pip names it."""
    extra: str = ""
    """The processpype extra that installs ``package``."""

    def is_installed(self) -> bool:
        """True when the package this type needs (if any) can be imported."""
        return self.package is None or importlib.util.find_spec(self.package) is not None


_BACKENDS = "processpype.communications.backends"

BUILTIN_BACKENDS: dict[str, BuiltinBackendType] = {
    "telegram": BuiltinBackendType(
        TelegramCommunicatorConfig,
        f"{_BACKENDS}.telegram:TelegramCommunicator",
        package="telethon",
        distribution="telethon",
        extra="telegram",
    ),
    "email": BuiltinBackendType(
        EmailCommunicatorConfig,
        f"{_BACKENDS}.email:EmailCommunicator",
        package="aiosmtplib",
        distribution="aiosmtplib",
        extra="email",
    ),
    "console": BuiltinBackendType(
        ConsoleCommunicatorConfig, f"{_BACKENDS}.console:ConsoleCommunicator"
    ),
    "webhook": BuiltinBackendType(
        WebhookCommunicatorConfig,
        f"{_BACKENDS}.webhook:WebhookCommunicator",
        package="httpx",
        distribution="httpx",
        extra="webhook",
    ),
    "slack": BuiltinBackendType(
        SlackCommunicatorConfig,
        f"{_BACKENDS}.webhook:SlackCommunicator",
        package="httpx",
        distribution="httpx",
        extra="webhook",
    ),
    "discord": BuiltinBackendType(
        DiscordCommunicatorConfig,
        f"{_BACKENDS}.webhook:DiscordCommunicator",
        package="httpx",
        distribution="httpx",
        extra="webhook",
    ),
}
"""Every built-in backend type. A new one is one row here (its config model above, its
communicator in ``processpype/communications/backends/``); the config union, the loader
and the factory all read this table."""

BUILTIN_BACKEND_TYPES: dict[str, type[CommunicatorBackendConfig]] = {
    name: builtin.config for name, builtin in BUILTIN_BACKENDS.items()
}
"""Each built-in backend type's config model (the ``config`` column of ``BUILTIN_BACKENDS``)."""


def _edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) turning ``a`` into ``b``."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            cost = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (char_a != char_b),
            )
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


def _close_builtin_type(value: str) -> str | None:
    """The built-in type ``value`` is a slip of (case, or one or two edits), if any."""
    lowered = value.strip().lower()
    if len(lowered) < 3:
        return None
    best: tuple[int, str] | None = None
    for name in BUILTIN_BACKENDS:
        distance = _edit_distance(lowered, name)
        if distance <= 2 and (best is None or distance < best[0]):
            best = (distance, name)
    return best[1] if best else None


def _backend_tag(value: Any) -> str | None:
    backend_type = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(backend_type, str) or not backend_type:
        return None
    return backend_type if backend_type in BUILTIN_BACKENDS else _CUSTOM_TAG


_CUSTOM_TAG = "custom"
"""The union tag of every type that is not built in (third-party backends)."""

BACKEND_TAGS = frozenset({*BUILTIN_BACKENDS, _CUSTOM_TAG})
"""The tags of ``BackendConfig``'s choices (pydantic names them in error locations)."""

if TYPE_CHECKING:
    # Every choice is a CommunicatorBackendConfig: that is what a checker can know.
    type BackendConfig = CommunicatorBackendConfig
else:
    BackendConfig = Annotated[
        Union[
            (
                *(Annotated[entry.config, Tag(name)] for name, entry in BUILTIN_BACKENDS.items()),
                Annotated[CommunicatorBackendConfig, Tag(_CUSTOM_TAG)],
            )
        ],
        Discriminator(
            _backend_tag,
            custom_error_type="missing_backend_type",
            custom_error_message=(
                f"every backend needs a 'type' ({', '.join(BUILTIN_BACKENDS)} or a "
                "registered custom type)"
            ),
        ),
    ]
"""A backend's config, told apart by its ``type``: a built-in type's model, or the base
``CommunicatorBackendConfig`` (which keeps its extra keys) for any other type."""


class CommunicationsConfig(ConfigurationModel):
    """Top-level communications configuration."""

    enabled: bool = Field(default=False, description="Enable the communication system")
    backends: dict[str, BackendConfig] = Field(
        default_factory=dict, description="Named communicator backends (discriminated by type)"
    )
    outbox: OutboxConfig | None = Field(
        default=None,
        description="A Redis outbox shared by processes (see docs/scale-out.md); "
        "None sends in-process",
    )

    @field_validator("backends", mode="before")
    @classmethod
    def _backends_mapping(cls, value: Any) -> Any:
        if value is None:
            return {}
        return value

    @field_validator("backends")
    @classmethod
    def _backend_names(cls, value: dict[str, CommunicatorBackendConfig]) -> Any:
        for name in value:
            if not name.strip():
                raise ValueError("a backend name cannot be empty")
        return value

    def labels(self) -> dict[str, list[str]]:
        """Map every label to the names of the enabled backends that handle it."""
        routes: dict[str, list[str]] = {}
        for name, backend in self.backends.items():
            if backend.enabled:
                for label in backend.labels:
                    routes.setdefault(label, []).append(name)
        return routes
