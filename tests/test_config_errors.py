"""Every config mistake is a ConfigError naming the file and the key path, found by ``check``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from processpype.cli import main
from processpype.communications import Notifier
from processpype.communications.errors import ConfigError
from processpype.config.loader import load_config, load_config_text


@pytest.fixture(autouse=True)
def _no_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCESSPYPE_CONFIG", raising=False)


Case = tuple[dict[str, Any], str, str]

HOOK: dict[str, Any] = {"type": "webhook", "url": "https://hooks.example.com/T0/secret"}

# (backend, the key path named, words of the problem) for what send refuses at creation.
REFUSED_AT_CREATION: dict[str, Case] = {
    "template typo": (
        {**HOOK, "body": {"text": "{mesage}"}},
        "backends.b.body.text",
        "unknown placeholder {mesage}",
    ),
    "ftp url": (
        {**HOOK, "url": "ftp://files.example.com/drop"},
        "backends.b.url",
        "must be an http:// or https:// URL",
    ),
    "header line break": (
        {**HOOK, "headers": {"X-Token": "abc\ndef"}},
        "backends.b.headers.X-Token",
        "contains a line break",
    ),
}

# What the config model itself refuses (the loader names file and key path).
REFUSED_BY_THE_MODEL: dict[str, Case] = {
    "bad default recipient": (
        {
            "type": "email",
            "from_address": "alerts@example.com",
            "default_recipients": ["ops@example.com", "not an address"],
        },
        "backends.b.default_recipients",
        "'not an address' is not an email address",
    ),
    "chat id with spaces": (
        {
            "type": "telegram",
            "api_id": 1,
            "api_hash": "h" * 32,
            "token": "1:abc",
            "chats": {"default": {"chat_id": "not a chat"}},
        },
        "backends.b.chats.default.chat_id",
        "'not a chat' is not a chat",
    ),
}


def _write(tmp_path: Path, backend: dict[str, Any]) -> Path:
    path = tmp_path / "notify.yaml"
    path.write_text(yaml.safe_dump({"enabled": True, "backends": {"b": backend}}))
    return path


@pytest.mark.parametrize("case", sorted({**REFUSED_AT_CREATION, **REFUSED_BY_THE_MODEL}))
def test_check_refuses_what_send_refuses_naming_file_and_key(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend, key, problem = {**REFUSED_AT_CREATION, **REFUSED_BY_THE_MODEL}[case]
    path = _write(tmp_path, backend)

    check = main(["check", str(path)])
    check_err = capsys.readouterr().err
    send = main(["send", "-c", str(path), "hello"])
    send_err = capsys.readouterr().err

    assert check == send == 2
    for err in (check_err, send_err):
        assert f"{path}: {key}: " in err
        assert problem in err


@pytest.mark.parametrize("case", sorted(REFUSED_AT_CREATION))
def test_notifier_from_yaml_names_the_file_in_a_backend_s_config_error(
    case: str, tmp_path: Path
) -> None:
    backend, key, problem = REFUSED_AT_CREATION[case]
    path = _write(tmp_path, backend)

    with pytest.raises(ConfigError) as caught:
        Notifier.from_yaml(path)

    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert problem in str(caught.value)
    assert caught.value.source == str(path)


def test_check_lists_an_invalid_backend_beside_the_valid_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notify.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "enabled": True,
                "backends": {
                    "log": {"type": "console"},
                    "b": {**HOOK, "body": {"text": "{mesage}"}},
                },
            }
        )
    )

    code = main(["check", str(path)])

    out = capsys.readouterr().out
    assert code == 2
    assert "available" in out
    assert "invalid: unknown placeholder {mesage}" in out


def test_a_self_referencing_yaml_alias_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("enabled: true\nbackends: &all\n  again: *all\n")

    with pytest.raises(ConfigError, match="refers to itself") as caught:
        load_config(path)

    assert str(caught.value).startswith(f"{path}: backends.again: ")


def test_yaml_nested_beyond_what_the_parser_follows_is_a_config_error() -> None:
    text = "backends: " + "[" * 5000 + "]" * 5000

    with pytest.raises(ConfigError, match="nested deeper") as caught:
        load_config_text(text, source="deep.yaml")

    assert str(caught.value).startswith("deep.yaml: ")


def test_a_config_nested_too_deeply_names_where_it_starts() -> None:
    text = "backends: " + "[" * 100 + "]" * 100

    with pytest.raises(ConfigError, match="nested deeper than 64 levels") as caught:
        load_config_text(text, source="deep.yaml")

    assert str(caught.value).startswith("deep.yaml: backends[0][0][0]...: ")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"A": "/srv/a"}, "/srv/a/out"),
        ({"B": "/srv/b"}, "/srv/b/out"),
        ({}, "/tmp/fallback/out"),
    ],
)
def test_a_default_may_itself_hold_a_placeholder(env: dict[str, str], expected: str) -> None:
    text = "backends:\n  log:\n    type: console\n    path: ${A:-${B:-/tmp/fallback}}/out\n"

    config = load_config_text(text, env=env)

    assert config.backends["log"].path == expected  # type: ignore[attr-defined]


def test_a_literal_dollar_brace_inside_a_default_stays_literal() -> None:
    text = "backends:\n  log:\n    type: console\n    path: ${A:-/tmp/$${x}}\n"

    config = load_config_text(text, env={})

    assert config.backends["log"].path == "/tmp/${x}"  # type: ignore[attr-defined]


def test_a_communications_section_that_is_no_mapping_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="communications: must be a mapping of settings, not int"):
        Notifier({"communications": 5})
