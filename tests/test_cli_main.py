"""``processpype.cli.main`` called in process: the smaller behaviours of the command line."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NoReturn

import pytest

from processpype import __version__
from processpype.cli import main, masked_config
from processpype.config.loader import config_from_mapping


@pytest.fixture(autouse=True)
def _no_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCESSPYPE_CONFIG", raising=False)


def test_disabled_communications_skip_every_backend_and_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "notify.yaml"
    config.write_text("enabled: false\nbackends:\n  log:\n    type: console\n")

    code = main(["send", "-c", str(config), "hello"])

    captured = capsys.readouterr()
    assert code == 0
    assert captured.out == "log: skipped: communications are disabled (enabled: false)\n"
    assert "enabled: false" in captured.err


def test_quiet_prints_nothing_when_every_backend_delivered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "notify.yaml"
    config.write_text(
        f"enabled: true\nbackends:\n  log:\n    type: console\n    path: {tmp_path}/o\n"
    )

    code = main(["send", "-q", "-c", str(config), "hello"])

    assert code == 0
    assert capsys.readouterr().out == ""


def test_an_empty_message_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["send", "  "])

    assert code == 2
    assert "the message is empty" in capsys.readouterr().err


def test_a_missing_message_says_how_to_give_one(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["send"])

    assert code == 2
    assert "MESSAGE argument, or - to read it from stdin" in capsys.readouterr().err


def test_config_can_come_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        "sys.stdin", io.StringIO("enabled: true\nbackends:\n  ops:\n    type: console\n")
    )

    code = main(["check", "-"])

    assert code == 0
    assert "Config: <stdin>" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([])

    assert code == 2
    assert "choose a command" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["send", "--help"])

    assert code == 0
    assert "-m, --metadata KEY=VALUE" in capsys.readouterr().out


def test_version_names_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--version"])

    assert code == 0
    assert capsys.readouterr().out.strip() == f"processpype-notify {__version__}"


def test_smtpd_auth_errors_never_echo_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["smtpd", "--auth", "hunter2-no-user-part"])

    assert code == 2
    assert "hunter2" not in capsys.readouterr().err


def test_secret_looking_keys_of_custom_backends_are_masked() -> None:
    config = config_from_mapping(
        {
            "enabled": True,
            "backends": {
                "pager": {
                    "type": "pagerduty",
                    "api_key": "pd-secret",
                    "routing": {"auth_token": "nested-secret", "team": "ops"},
                    "events_url": "https://events.example.com/v2/enqueue?token=url-secret",
                }
            },
        }
    )

    dumped = masked_config(config)["backends"]["pager"]

    assert dumped["api_key"] == "**********"
    assert dumped["routing"] == {"auth_token": "**********", "team": "ops"}
    assert dumped["events_url"] == "https://events.example.com/**********"


def test_a_backend_without_an_outcome_by_the_timeout_is_not_delivered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "notify.yaml"
    config.write_text("enabled: true\nbackends:\n  slow:\n    type: recording\n    delay: 30\n")

    code = main(["send", "-c", str(config), "--timeout", "0.2", "hello"])

    assert code == 1
    assert capsys.readouterr().out == "slow: not delivered: no outcome within 0.2 s (--timeout)\n"


def test_send_exits_1_and_says_why_when_every_backend_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "notify.yaml"
    config.write_text("enabled: true\nbackends:\n  pager:\n    type: pagerduty\n")

    code = main(["send", "-c", str(config), "hello"])

    captured = capsys.readouterr()
    assert code == 1
    assert "pager: skipped: unknown backend type 'pagerduty'" in captured.out
    assert "nothing was delivered" in captured.err


def test_send_refuses_a_typo_of_a_built_in_type_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "notify.yaml"
    config.write_text("enabled: true\nbackends:\n  mail:\n    type: Email\n")

    code = main(["send", "-c", str(config), "hello"])

    err = capsys.readouterr().err
    assert code == 2
    assert f"{config}: backends.mail.type: unknown backend type 'Email'" in err
    assert "did you mean 'email'?" in err


def test_check_warns_about_an_email_backend_without_recipients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "notify.yaml"
    config.write_text(
        "enabled: true\nbackends:\n  mail:\n    type: email\n    from_address: a@example.com\n"
    )

    code = main(["check", str(config)])

    assert code == 0
    assert "available (no default_recipients: a message without metadata['recipients']" in (
        capsys.readouterr().out
    )


def test_a_warning_stays_one_line_while_a_secret_is_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A registered secret (any webhook URL, token or password) wraps the log-record
    # factory; the CLI's formatter must still print a warning as its one line.
    from processpype.foundation._masking import register_secrets

    class Owner:
        pass

    owner = Owner()
    register_secrets(owner, ["s3cr3t-token-value"])
    config = tmp_path / "notify.yaml"
    config.write_text("enabled: false\nbackends:\n  log:\n    type: console\n")

    code = main(["send", "-c", str(config), "hello"])

    err = capsys.readouterr().err
    assert code == 0
    assert "Logging error" not in err
    assert err.startswith("processpype-notify: warning: communications are disabled in ")
    del owner


def test_a_backend_that_cannot_be_built_fails_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from processpype.communications.backends import register_backend, unregister_backend

    def explode(name: str, config: object) -> NoReturn:
        raise RuntimeError("the factory broke")

    register_backend("exploding", explode)
    config = tmp_path / "notify.yaml"
    config.write_text(
        "enabled: true\nbackends:\n"
        f"  log:\n    type: console\n    path: {tmp_path / 'out.jsonl'}\n"
        "  boom:\n    type: exploding\n"
    )
    try:
        code = main(["send", "-c", str(config), "hello"])
    finally:
        unregister_backend("exploding")

    out = capsys.readouterr().out
    assert code == 1
    assert "boom: failed: cannot be created: RuntimeError: the factory broke\n" in out
    assert "log: delivered\n" in out


def test_a_slow_starting_backend_does_not_hold_back_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from processpype.communications.backends import register_backend, unregister_backend
    from processpype.testing.recording import RecordingCommunicator

    class NeverUp(RecordingCommunicator):
        """A backend whose server never answers the connect."""

        async def start(self) -> None:
            await asyncio.Event().wait()

    register_backend("never-up", lambda name, config: NeverUp(name))
    config = tmp_path / "notify.yaml"
    config.write_text(
        "enabled: true\nbackends:\n"
        f"  log:\n    type: console\n    path: {tmp_path / 'out.jsonl'}\n"
        "  stuck:\n    type: never-up\n"
    )
    try:
        code = main(["send", "-c", str(config), "--timeout", "2", "hello"])
    finally:
        unregister_backend("never-up")

    out = capsys.readouterr().out
    assert code == 1
    assert "log: delivered\n" in out  # sent as soon as it was up, not after the timeout
    assert "stuck: not delivered: no outcome within 2 s (--timeout)\n" in out


def test_a_hung_stop_is_reported_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from processpype.cli import _config
    from processpype.communications.base import NoOpCommunicator
    from processpype.communications.dispatcher import CommunicationDispatcher

    class HungStop(NoOpCommunicator):
        async def stop(self) -> None:
            await asyncio.Event().wait()  # never returns: cancelled by the bound

    monkeypatch.setattr(_config, "STOP_TIMEOUT", 0.01)
    dispatcher = CommunicationDispatcher()
    dispatcher.register(HungStop("stuck"), ["default"])
    with caplog.at_level("WARNING", logger="processpype"):
        asyncio.run(_config.stop(dispatcher))
    lines = [r.getMessage() for r in caplog.records if "stop" in r.getMessage()]
    assert lines == ["some backends did not stop within 0.01 s"]
