"""YAML loading: both root shapes, ${VAR} substitution, and errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from processpype.communications.errors import ConfigError
from processpype.config import load_config, load_config_text
from processpype.config.models import EmailCommunicatorConfig

ROOT_COMMUNICATIONS = """
enabled: true
backends:
  out: {type: console}
"""

APPLICATION = """
app_name: nightly-backup
logging: {level: INFO}
communications:
  enabled: true
  backends:
    out: {type: console, labels: [ops]}
"""


def write(tmp_path: Path, text: str, name: str = "notify.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_root_can_be_the_communications_section(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ROOT_COMMUNICATIONS))
    assert config.enabled is True
    assert list(config.backends) == ["out"]


def test_root_can_be_an_application_config_with_a_communications_key(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, APPLICATION))
    assert config.backends["out"].labels == ["ops"]


def test_empty_file_is_a_disabled_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.enabled is False
    assert config.backends == {}


def test_variables_are_substituted_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("SMTP_PORT", "2525")
    path = write(
        tmp_path,
        """
backends:
  mail:
    type: email
    from_address: bot@example.com
    port: ${SMTP_PORT}
    password: ${SMTP_PASSWORD}
""",
    )
    backend = load_config(path).backends["mail"]
    assert isinstance(backend, EmailCommunicatorConfig)
    assert backend.port == 2525
    assert backend.password.get_secret_value() == "s3cret"


def test_variables_come_from_the_given_mapping_instead_of_the_environment() -> None:
    config = load_config_text(
        "backends: {out: {type: console, path: '${LOG_DIR}/n.jsonl'}}", env={"LOG_DIR": "/var/x"}
    )
    assert config.backends["out"].path == "/var/x/n.jsonl"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${NAME:-fallback}", {}, "fallback"),
        ("${NAME:-fallback}", {"NAME": ""}, "fallback"),
        ("${NAME:-fallback}", {"NAME": "set"}, "set"),
        ("${NAME:-}", {}, ""),
        ("${NAME}", {"NAME": ""}, ""),
        ("$${NAME}", {}, "${NAME}"),
        ("a-${X}-b-${Y:-y}", {"X": "x"}, "a-x-b-y"),
        ("price: $5", {}, "price: $5"),
    ],
)
def test_substitution_rules(value: str, env: dict[str, str], expected: str) -> None:
    config = load_config_text(f"backends: {{out: {{type: console, path: '{value}'}}}}", env=env)
    assert config.backends["out"].path == expected  # type: ignore[attr-defined]


def test_unset_variable_names_the_variable_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  tg:\n    type: telegram\n    token: ${TG_TOKEN}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    text = str(caught.value)
    assert "TG_TOKEN" in text
    assert str(path) in text
    assert "backends.tg.token" in text


def test_bad_placeholder_is_reported_without_repeating_it() -> None:
    with pytest.raises(ConfigError, match=r"backends\.out\.path: invalid placeholder") as caught:
        load_config_text("backends: {out: {type: console, path: 'pa${ss-WORD}'}}", env={})
    assert "ss-WORD" not in str(caught.value)


def test_unclosed_placeholder_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"backends\.out\.path: a '\$\{' is never closed"):
        load_config_text("backends: {out: {type: console, path: 'x-${HOME'}}", env={})


def test_validation_error_names_the_file_and_key_path(tmp_path: Path) -> None:
    path = write(
        tmp_path, "communications:\n  backends:\n    out:\n      type: console\n      lables: [x]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (
        str(caught.value)
        == f"{path}: communications.backends.out.lables: Extra inputs are not permitted"
    )


def test_several_problems_are_listed_one_per_line(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  a: {type: console, lables: [x]}\n  b: {labels: [y]}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "2 problems" in text
    assert "backends.a.lables" in text
    assert "backends.b: every backend needs a 'type'" in text


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  out: {type: console\n")
    with pytest.raises(ConfigError, match=r"notify\.yaml: invalid YAML at line \d+"):
        load_config(path)


def test_root_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="root must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_communications_key_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="communications: must be a mapping"):
        load_config(write(tmp_path, "communications: yes-please\n"))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_tags_that_build_objects_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "backends: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_config_error_never_shows_a_secret_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "backends:\n  tg: {type: telegram, api_id: oops, api_hash: HASHSECRET, token: TOKSECRET}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "api_id" in str(caught.value)
    assert "TOKSECRET" not in str(caught.value)
    assert "HASHSECRET" not in str(caught.value)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="enabled"):
        load_config_text("enabled: maybe\n")
