"""Configuration models: backend discrimination, strictness, secrets and TLS modes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from processpype.communications.models import MessageSeverity
from processpype.config.models import (
    CommunicationsConfig,
    CommunicatorBackendConfig,
    ConsoleCommunicatorConfig,
    EmailCommunicatorConfig,
    TelegramChatConfig,
    TelegramCommunicatorConfig,
)

TELEGRAM = {
    "type": "telegram",
    "api_id": 123,
    "api_hash": "hash-value-x",
    "token": "tok:SECRET",
    "chats": {"default": {"chat_id": -100123}},
}
EMAIL = {"type": "email", "from_address": "bot@example.com"}


def test_communications_defaults_match_the_reference() -> None:
    config = CommunicationsConfig()
    assert config.enabled is False
    assert config.backends == {}


def test_backends_are_discriminated_by_type() -> None:
    config = CommunicationsConfig.model_validate(
        {
            "backends": {
                "tg": TELEGRAM,
                "mail": EMAIL,
                "out": {"type": "console"},
                "mine": {"type": "pager", "pager_url": "https://pager.invalid"},
            }
        }
    )
    assert isinstance(config.backends["tg"], TelegramCommunicatorConfig)
    assert isinstance(config.backends["mail"], EmailCommunicatorConfig)
    assert isinstance(config.backends["out"], ConsoleCommunicatorConfig)
    custom = config.backends["mine"]
    assert type(custom) is CommunicatorBackendConfig
    assert custom.model_extra == {"pager_url": "https://pager.invalid"}


def test_backend_base_defaults_match_the_reference() -> None:
    backend = CommunicatorBackendConfig(type="custom")
    assert backend.enabled is True
    assert backend.labels == ["default"]
    assert backend.min_severity is MessageSeverity.DEBUG


def test_telegram_defaults_match_the_reference() -> None:
    config = TelegramCommunicatorConfig.model_validate(TELEGRAM)
    assert config.session_string.get_secret_value() == ""
    assert config.listen_to_commands is False
    assert list(config.chats) == ["default"]
    assert config.parse_mode is None
    assert config.max_queue_size == 1000
    assert (config.per_chat_per_second, config.per_group_per_minute) == (1.0, 20)
    assert config.global_per_second == 30.0


def test_telegram_chat_defaults_match_the_reference() -> None:
    chat = TelegramChatConfig(chat_id="-100123")
    assert chat.topic_id is None
    assert chat.command_authorized is False
    assert chat.active is True
    assert chat.allowed_sender_ids == []


def test_telegram_chat_id_given_as_number_is_kept_as_text() -> None:
    assert (
        TelegramChatConfig.model_validate({"chat_id": -1001234567890}).chat_id == "-1001234567890"
    )


def test_email_defaults_match_the_reference() -> None:
    config = EmailCommunicatorConfig.model_validate(EMAIL)
    assert (config.host, config.port, config.username) == ("localhost", 587, "")
    assert config.password.get_secret_value() == ""
    assert (config.use_tls, config.start_tls) == (True, False)
    assert config.default_recipients == []
    assert (config.timeout, config.validate_certs, config.max_attempts) == (30.0, True, 3)
    assert config.cert_bundle is None
    assert config.local_hostname is None


def test_email_start_tls_alone_means_starttls() -> None:
    config = EmailCommunicatorConfig.model_validate({**EMAIL, "start_tls": True})
    assert (config.use_tls, config.start_tls) == (False, True)


def test_email_both_false_means_plain() -> None:
    config = EmailCommunicatorConfig.model_validate({**EMAIL, "use_tls": False, "start_tls": False})
    assert (config.use_tls, config.start_tls) == (False, False)


def test_email_recipients_accept_a_comma_separated_string() -> None:
    config = EmailCommunicatorConfig.model_validate(
        {**EMAIL, "default_recipients": "a@example.com, b@example.com"}
    )
    assert config.default_recipients == ["a@example.com", "b@example.com"]


def test_min_severity_accepts_any_case() -> None:
    config = CommunicatorBackendConfig(type="x", min_severity="ERROR")  # type: ignore[arg-type]
    assert config.min_severity is MessageSeverity.ERROR


@pytest.mark.parametrize(
    ("backend", "field"),
    [
        (TELEGRAM, "token"),
        (TELEGRAM, "api_hash"),
        ({**TELEGRAM, "session_string": "1BVtsOKABu0SESSION"}, "session_string"),
        ({**EMAIL, "password": "hunter2-SECRET"}, "password"),
    ],
)
def test_secrets_are_masked_in_repr_str_and_json(backend: dict[str, Any], field: str) -> None:
    config = CommunicationsConfig.model_validate({"backends": {"b": backend}})
    secret = backend[field]
    value = getattr(config.backends["b"], field)
    assert isinstance(value, SecretStr)
    assert value.get_secret_value() == secret
    for text in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert secret not in text


def test_labels_route_to_enabled_backends_only() -> None:
    config = CommunicationsConfig.model_validate(
        {
            "backends": {
                "a": {"type": "console", "labels": ["ops", "default"]},
                "b": {"type": "console", "labels": ["ops"]},
                "c": {"type": "console", "labels": ["ops"], "enabled": False},
            }
        }
    )
    assert config.labels() == {"ops": ["a", "b"], "default": ["a"]}


# Each malformed config must fail with a pydantic ValidationError whose location names the
# offending key, and whose message says what is wrong.
MALFORMED: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing type", {"backends": {"alerts": {"labels": ["x"]}}}, "backends.alerts", "type"),
    ("empty type", {"backends": {"alerts": {"type": ""}}}, "backends.alerts", "type"),
    ("type not a string", {"backends": {"alerts": {"type": 5}}}, "backends.alerts", "type"),
    ("backend not a mapping", {"backends": {"alerts": "console"}}, "backends.alerts", "type"),
    ("typo lables", {"backends": {"c": {"type": "console", "lables": ["x"]}}}, "lables", "Extra"),
    (
        "empty labels",
        {"backends": {"c": {"type": "console", "labels": []}}},
        "labels",
        "at least 1",
    ),
    ("blank label", {"backends": {"c": {"type": "console", "labels": [" "]}}}, "labels", "empty"),
    ("labels not a list", {"backends": {"c": {"type": "console", "labels": 3}}}, "labels", "list"),
    ("enabled not bool", {"enabled": "maybe"}, "enabled", "boolean"),
    ("unknown top key", {"backend": {}}, "backend", "Extra"),
    (
        "bad min_severity",
        {"backends": {"c": {"type": "console", "min_severity": "loud"}}},
        "min_severity",
        "debug",
    ),
    (
        "console bad stream",
        {"backends": {"c": {"type": "console", "stream": "tty"}}},
        "stream",
        "stdout",
    ),
    ("telegram no api_id", {"backends": {"t": {**TELEGRAM, "api_id": None}}}, "api_id", "integer"),
    (
        "telegram api_id text",
        {"backends": {"t": {**TELEGRAM, "api_id": "abc"}}},
        "api_id",
        "integer",
    ),
    ("telegram empty token", {"backends": {"t": {**TELEGRAM, "token": ""}}}, "token", "empty"),
    (
        "telegram token shape",
        {"backends": {"t": {**TELEGRAM, "token": "nocolon"}}},
        "token",
        "bot token",
    ),
    (
        "telegram label without chat",
        {"backends": {"t": {**TELEGRAM, "chats": {"ops": {"chat_id": 1}}}}},
        "backends.t",
        "no chat for label",
    ),
    (
        "telegram topic zero",
        {"backends": {"t": {**TELEGRAM, "chats": {"default": {"chat_id": 1, "topic_id": 0}}}}},
        "topic_id",
        "greater",
    ),
    (
        "telegram empty api_hash",
        {"backends": {"t": {**TELEGRAM, "api_hash": " "}}},
        "api_hash",
        "empty",
    ),
    (
        "telegram missing token",
        {"backends": {"t": {k: v for k, v in TELEGRAM.items() if k != "token"}}},
        "token",
        "required",
    ),
    (
        "telegram chat no id",
        {"backends": {"t": {**TELEGRAM, "chats": {"default": {}}}}},
        "chat_id",
        "required",
    ),
    (
        "telegram chat typo",
        {"backends": {"t": {**TELEGRAM, "chats": {"default": {"chat_id": 1, "topic": 5}}}}},
        "topic",
        "Extra",
    ),
    (
        "telegram bad parse_mode",
        {"backends": {"t": {**TELEGRAM, "parse_mode": "rst"}}},
        "parse_mode",
        "html",
    ),
    (
        "telegram zero queue",
        {"backends": {"t": {**TELEGRAM, "max_queue_size": 0}}},
        "max_queue_size",
        "greater",
    ),
    ("email no from_address", {"backends": {"m": {"type": "email"}}}, "from_address", "required"),
    ("email port too big", {"backends": {"m": {**EMAIL, "port": 70000}}}, "port", "65535"),
    (
        "email both tls modes",
        {"backends": {"m": {**EMAIL, "use_tls": True, "start_tls": True}}},
        "backends.m",
        "start_tls",
    ),
    (
        "email zero attempts",
        {"backends": {"m": {**EMAIL, "max_attempts": 0}}},
        "max_attempts",
        "greater",
    ),
    (
        "email header injection",
        {"backends": {"m": {**EMAIL, "from_address": "a@b.c\r\nBcc: x@y.z"}}},
        "from_address",
        "line break",
    ),
    ("email negative timeout", {"backends": {"m": {**EMAIL, "timeout": -1}}}, "timeout", "greater"),
    ("webhook no url", {"backends": {"w": {"type": "webhook"}}}, "url", "required"),
    (
        "webhook bad method",
        {"backends": {"w": {"type": "webhook", "url": "https://h.invalid", "method": "GET"}}},
        "method",
        "POST",
    ),
    (
        "slack typo",
        {"backends": {"s": {"type": "slack", "url": "https://h.invalid", "channel": "#x"}}},
        "channel",
        "Extra",
    ),
]


@pytest.mark.parametrize(
    ("config", "location", "words"),
    [pytest.param(c, loc, w, id=name) for name, c, loc, w in MALFORMED],
)
def test_malformed_config_names_the_field(
    config: dict[str, Any], location: str, words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        CommunicationsConfig.model_validate(config)
    errors = caught.value.errors()
    locations = [".".join(str(part) for part in error["loc"]) for error in errors]
    assert any(location in loc for loc in locations), locations
    text = str(caught.value)
    assert words.lower() in text.lower()


def test_at_least_twenty_malformed_configs_are_covered() -> None:
    assert len(MALFORMED) >= 20


def test_validation_error_never_shows_a_secret_value() -> None:
    with pytest.raises(ValidationError) as caught:
        CommunicationsConfig.model_validate(
            {"backends": {"t": {**TELEGRAM, "api_id": "not-a-number"}}}
        )
    assert "tok:SECRET" not in str(caught.value)


def test_validation_error_of_a_secret_field_does_not_echo_it() -> None:
    with pytest.raises(ValidationError) as caught:
        CommunicationsConfig.model_validate(
            {"backends": {"t": {**TELEGRAM, "token": "no-colon-SECRET-VALUE"}}}
        )
    assert "token" in str(caught.value)
    assert "SECRET-VALUE" not in str(caught.value)
