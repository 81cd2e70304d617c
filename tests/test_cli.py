"""The ``processpype-notify`` console script, run for real in subprocesses."""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import pytest

from processpype.testing.smtp import SMTPTestServer

SCRIPT = Path(sys.executable).with_name("processpype-notify")
SECRETS = (
    "SECRET-BOT-TOKEN",
    "SECRET-API-HASH",
    "SECRET-SMTP-PASSWORD",
    "SECRET-WEBHOOK-PATH",
    "SECRET-HEADER",
)


@pytest.fixture(autouse=True)
def _console_script_installed() -> None:
    if not SCRIPT.exists():
        pytest.fail(f"the console script is not installed next to {sys.executable}: {SCRIPT}")


def _env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PROCESSPYPE_CONFIG"}
    env.update(overrides or {})
    return env


def _default_sigint() -> None:
    # A child started from a shell's background job inherits an ignored SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the console script to completion."""
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        input=input,
        env=_env(env),
        cwd=cwd,
        timeout=60,
        check=False,
    )


class Lines:
    """Reads a pipe on a thread so a test can wait for a line without blocking forever."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        with stream:  # closed at the end of the output, so no pipe is left open
            for line in stream:
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Block until a line matches ``pattern``; fail showing what came otherwise."""
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if found := re.search(pattern, line):
                return found
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if item is None:
                break
            self.seen.append(item)
            if found := re.search(pattern, item):
                return found
        pytest.fail(f"no line matching {pattern!r} within {timeout} s; got {self.seen!r}")

    def rest(self, timeout: float = 10.0) -> str:
        """Everything up to the end of the stream."""
        self._thread.join(timeout)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.seen.append(item)
        return "\n".join(self.seen)


class Running:
    """A console script running in the background, its output read line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [str(SCRIPT), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            preexec_fn=_default_sigint,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.stdout = Lines(self.process.stdout)
        self.stderr = Lines(self.process.stderr)

    def interrupt(self, timeout: float = 15.0) -> int:
        """Press Ctrl-C; return the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """Make sure the process is gone."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    """Where the console backend of ``json_config`` appends what it was sent."""
    return tmp_path / "outbox.jsonl"


@pytest.fixture
def json_config(tmp_path: Path, outbox: Path) -> Path:
    """A config whose console backend writes JSON lines to ``outbox``."""
    return write(
        tmp_path / "notify.yaml",
        f"""
enabled: true
backends:
  log:
    type: console
    path: {outbox}
    labels: [default, ops]
""",
    )


def assert_one_line_without_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


# -- send ---------------------------------------------------------------------------------


def test_send_without_any_config_prints_the_message_on_the_console(tmp_path: Path) -> None:
    result = run_cli("send", "backup done", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "[INFO] default backup done" in result.stdout
    assert "console: delivered" in result.stdout


def test_python_dash_m_processpype_is_the_same_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "processpype", "send", "hello"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "[INFO] default hello" in result.stdout
    assert "console: delivered" in result.stdout


def test_send_exits_1_and_names_the_backend_that_failed(tmp_path: Path, outbox: Path) -> None:
    blocker = write(tmp_path / "not-a-folder", "")
    config = write(
        tmp_path / "notify.yaml",
        f"""
enabled: true
backends:
  good:
    type: console
    path: {outbox}
  broken:
    type: console
    path: {blocker}/messages.jsonl
""",
    )

    result = run_cli("send", "-c", str(config), "disk full")

    assert result.returncode == 1
    assert "good: delivered" in result.stdout
    assert re.search(r"^broken: failed: did not start: ", result.stdout, re.MULTILINE)


def test_metadata_pairs_reach_the_backend(json_config: Path, outbox: Path) -> None:
    result = run_cli(
        "send",
        "-c",
        str(json_config),
        "-m",
        "host=db1",
        "-m",
        "to=a@x.org",
        "-m",
        "to=b@x.org",
        "hi",
    )

    assert result.returncode == 0, result.stderr
    [record] = json_lines(outbox)
    assert record["metadata"] == {"host": "db1", "to": ["a@x.org", "b@x.org"]}


def test_label_severity_and_subject_reach_the_backend(json_config: Path, outbox: Path) -> None:
    result = run_cli(
        "send", "-c", str(json_config), "-l", "ops", "-s", "CRITICAL", "--subject", "DB", "down"
    )

    assert result.returncode == 0, result.stderr
    [record] = json_lines(outbox)
    assert (record["label"], record["severity"], record["subject"]) == ("ops", "critical", "DB")


def test_dash_reads_the_message_from_stdin(json_config: Path, outbox: Path) -> None:
    result = run_cli("send", "-c", str(json_config), "-", input="nightly report\nall green\n")

    assert result.returncode == 0, result.stderr
    [record] = json_lines(outbox)
    assert record["message"] == "nightly report\nall green"


def test_config_comes_from_the_environment_variable(json_config: Path, outbox: Path) -> None:
    result = run_cli("send", "from env", env={"PROCESSPYPE_CONFIG": str(json_config)})

    assert result.returncode == 0, result.stderr
    assert [r["message"] for r in json_lines(outbox)] == ["from env"]


def test_missing_environment_config_names_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"

    result = run_cli("send", "x", env={"PROCESSPYPE_CONFIG": str(missing)})

    assert result.returncode == 2
    assert_one_line_without_traceback(result.stderr)
    assert str(missing) in result.stderr
    assert "$PROCESSPYPE_CONFIG" in result.stderr


def test_bad_config_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    config = write(
        tmp_path / "notify.yaml",
        """
enabled: true
backends:
  mail:
    type: email
    port: 99999
    from_address: alerts@example.com
""",
    )

    result = run_cli("send", "-c", str(config), "x")

    assert result.returncode == 2
    assert_one_line_without_traceback(result.stderr)
    assert f"{config}: backends.mail.port:" in result.stderr


def test_debug_shows_the_traceback_of_a_config_error(tmp_path: Path) -> None:
    config = write(tmp_path / "notify.yaml", "backends: [unclosed\n")

    result = run_cli("send", "--debug", "-c", str(config), "x")

    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "ConfigError" in result.stderr


def test_unknown_flag_is_a_one_line_usage_error() -> None:
    result = run_cli("send", "--colour", "red", "x")

    assert result.returncode == 2
    assert_one_line_without_traceback(result.stderr)
    assert "--colour" in result.stderr


def test_unknown_severity_lists_the_choices() -> None:
    result = run_cli("send", "-s", "urgent", "x")

    assert result.returncode == 2
    assert_one_line_without_traceback(result.stderr)
    assert "-s/--severity" in result.stderr
    assert "debug, info, warning, error, critical" in result.stderr


def test_label_without_a_backend_is_a_usage_error() -> None:
    result = run_cli("send", "-l", "ops", "x")

    assert result.returncode == 2
    assert_one_line_without_traceback(result.stderr)
    assert "no backend handles label 'ops'" in result.stderr


# -- long sends and Ctrl-C ------------------------------------------------------------------


@pytest.fixture
def slow_config(tmp_path: Path, outbox: Path) -> Path:
    """A fast console backend and a ``recording`` backend that takes 30 s per message."""
    return write(
        tmp_path / "slow.yaml",
        f"""
enabled: true
backends:
  fast:
    type: console
    path: {outbox}
  slow:
    type: recording
    delay: 30
""",
    )


def test_ctrl_c_stops_and_names_what_was_not_delivered(slow_config: Path) -> None:
    send = Running("send", "-c", str(slow_config), "backup done")
    try:
        send.stdout.wait_for(r"^fast: delivered$")

        code = send.interrupt()
    finally:
        send.kill()

    assert code == 130
    send.stdout.wait_for(
        r"^slow: not delivered: interrupted \(Ctrl-C\) while sending; it may have been delivered$"
    )
    errors = send.stderr.rest()
    assert "not delivered to slow" in errors
    assert "Traceback" not in errors


def _run_on_terminal(*args: str) -> tuple[int, str, str]:
    """Run the console script with stderr on a pseudo-terminal; return code, out, err."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(SCRIPT), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            env=_env(),
        )
        os.close(follower)
        stdout, _ = process.communicate(timeout=30)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(leader)
    return process.returncode, stdout, terminal.decode()


def test_a_slow_send_shows_what_it_waits_for_on_a_terminal(tmp_path: Path) -> None:
    config = write(
        tmp_path / "slow.yaml",
        "enabled: true\nbackends:\n  slow:\n    type: recording\n    delay: 1.3\n",
    )

    code, stdout, terminal = _run_on_terminal("send", "-c", str(config), "x")

    assert code == 0
    assert "slow: delivered" in stdout
    assert "waiting for slow" in terminal


def test_a_slow_send_keeps_a_piped_stderr_free_of_status_lines(tmp_path: Path) -> None:
    config = write(
        tmp_path / "slow.yaml",
        "enabled: true\nbackends:\n  slow:\n    type: recording\n    delay: 1.3\n",
    )

    result = run_cli("send", "-c", str(config), "x")

    assert result.returncode == 0
    assert result.stderr == ""


# -- check --------------------------------------------------------------------------------


def test_check_masks_every_secret_and_lists_labels(tmp_path: Path) -> None:
    config = write(
        tmp_path / "notify.yaml",
        """
enabled: true
backends:
  tg:
    type: telegram
    api_id: 12345
    api_hash: SECRET-API-HASH
    token: "123456:SECRET-BOT-TOKEN"
    labels: [default, ops]
    chats:
      default: {chat_id: -1001234567890}
  mail:
    type: email
    host: smtp.example.com
    username: alerts
    password: SECRET-SMTP-PASSWORD
    from_address: alerts@example.com
    labels: [ops]
  hook:
    type: webhook
    url: https://hooks.example.com/services/SECRET-WEBHOOK-PATH
    headers: {Authorization: "Bearer SECRET-HEADER"}
    labels: [audit]
""",
    )

    result = run_cli("check", str(config))

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert not [secret for secret in SECRETS if secret in output]
    assert "https://hooks.example.com/**********" in output
    assert re.search(r"^\s+default\s+-> tg$", output, re.MULTILINE)
    assert re.search(r"^\s+ops\s+-> tg, mail$", output, re.MULTILINE)
    assert re.search(r"^\s+audit\s+-> hook$", output, re.MULTILINE)


def test_check_exits_1_for_an_unknown_backend_type(tmp_path: Path) -> None:
    config = write(
        tmp_path / "notify.yaml", "enabled: true\nbackends:\n  tg:\n    type: pagerduty\n"
    )

    result = run_cli("check", str(config))

    assert result.returncode == 1
    assert "unknown backend type 'pagerduty'" in result.stdout


def test_check_refuses_a_typo_of_a_built_in_type_with_a_suggestion(tmp_path: Path) -> None:
    config = write(
        tmp_path / "notify.yaml", "enabled: true\nbackends:\n  tg:\n    type: telegarm\n"
    )

    result = run_cli("check", str(config))

    assert result.returncode == 2
    assert f"{config}: backends.tg.type: unknown backend type 'telegarm'" in result.stderr
    assert "did you mean 'telegram'?" in result.stderr


def _email_config(tmp_path: Path, port: int) -> Path:
    return write(
        tmp_path / "mail.yaml",
        f"""
enabled: true
backends:
  mail:
    type: email
    host: 127.0.0.1
    port: {port}
    use_tls: false
    from_address: alerts@example.com
    default_recipients: [ops@example.com]
    local_hostname: cli.test
    timeout: 5
    max_attempts: 1
    retry_base_delay: 0.01
""",
    )


def test_check_connect_reports_a_reachable_smtp_server(tmp_path: Path) -> None:
    with SMTPTestServer() as server:
        result = run_cli("check", "--connect", str(_email_config(tmp_path, server.port)))

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^\s+mail\s+ok\s+started in", result.stdout, re.MULTILINE)


def test_check_connect_says_why_a_server_is_unreachable(tmp_path: Path) -> None:
    server = SMTPTestServer().start()
    port = server.port
    server.close()

    result = run_cli("check", "--connect", str(_email_config(tmp_path, port)))

    assert result.returncode == 1
    reason = re.search(r"^\s+mail\s+failed\s+(.+)$", result.stdout, re.MULTILINE)
    assert reason is not None, result.stdout
    assert f"127.0.0.1:{port}" in reason.group(1)


# -- smtpd --------------------------------------------------------------------------------


@pytest.fixture
def smtpd() -> Iterator[Running]:
    """``processpype-notify smtpd --port 0``, running; killed at teardown if still up."""
    server = Running("smtpd", "--port", "0")
    yield server
    server.kill()


def test_smtpd_prints_a_mail_sent_by_the_email_backend(tmp_path: Path, smtpd: Running) -> None:
    port = int(smtpd.stderr.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    config = _email_config(tmp_path, port)

    sent = run_cli("send", "-c", str(config), "--subject", "Backup 🎉", "all 3 volumes done")

    assert sent.returncode == 0, sent.stdout + sent.stderr
    smtpd.stdout.wait_for(r"^Subject: Backup 🎉$")
    smtpd.stdout.wait_for(r"^all 3 volumes done$")
    assert "From: alerts@example.com" in smtpd.stdout.seen
    assert "To: ops@example.com" in smtpd.stdout.seen


def test_the_config_snippet_smtpd_prints_sends_as_pasted(tmp_path: Path, smtpd: Running) -> None:
    smtpd.stderr.wait_for(r"default_recipients: \[you@example\.com\]")
    lines = smtpd.stderr.seen
    first = next(i for i, line in enumerate(lines) if "ready to paste):" in line) + 1
    last = next(i for i, line in enumerate(lines) if "default_recipients:" in line) + 1
    snippet = textwrap.dedent("\n".join(line.rstrip("\n") for line in lines[first:last]))
    config = write(tmp_path / "pasted.yaml", snippet + "\n")

    sent = run_cli("send", "-c", str(config), "pasted as is")

    assert sent.returncode == 0, sent.stdout + sent.stderr
    smtpd.stdout.wait_for(r"^pasted as is$")


def test_smtpd_stops_cleanly_on_ctrl_c(smtpd: Running) -> None:
    smtpd.stderr.wait_for(r"listening on 127\.0\.0\.1:\d+")

    assert smtpd.interrupt() == 0
    errors = smtpd.stderr.rest()
    assert "SMTP test server stopped" in errors
    assert "Traceback" not in errors
