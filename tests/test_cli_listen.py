"""``processpype-notify listen``: incoming messages printed as they arrive.

A chat cannot be driven from outside the process, so these tests run ``main()`` in
process with a recording backend the test can inject messages into; the Ctrl-C test runs
the real console script.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from processpype.cli import main
from processpype.communications.backends import register_backend, unregister_backend
from processpype.config.models import CommunicatorBackendConfig
from processpype.testing.recording import RecordingCommunicator

SCRIPT = Path(sys.executable).with_name("processpype-notify")
BACKEND_TYPE = "cli-test-chat"


class Chat(RecordingCommunicator):
    """A recording backend that says when it has started, so the test can inject."""

    def __init__(
        self, name: str, config: CommunicatorBackendConfig, started: threading.Event
    ) -> None:
        super().__init__(name, config)
        self._started_event = started

    async def start(self) -> None:
        await super().start()
        self._started_event.set()


class Chats:
    """The factory of backend type ``cli-test-chat``: keeps every ``Chat`` it makes."""

    def __init__(self) -> None:
        self.created: list[Chat] = []
        self.started = threading.Event()

    def __call__(self, name: str, config: CommunicatorBackendConfig) -> Chat:
        chat = Chat(name, config, self.started)
        self.created.append(chat)
        return chat

    def when_started(self, action: Callable[[Chat], object]) -> threading.Thread:
        """On a helper thread: wait until the CLI started its chat, then ``action`` it."""

        def run() -> None:
            if self.started.wait(10):
                action(self.created[0])

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


@pytest.fixture
def chats() -> Iterator[Chats]:
    """Every ``cli-test-chat`` backend the CLI creates while the test runs."""
    factory = Chats()
    register_backend(BACKEND_TYPE, factory, replace=True)
    yield factory
    unregister_backend(BACKEND_TYPE)


@pytest.fixture
def chat_config(tmp_path: Path) -> Path:
    path = tmp_path / "chat.yaml"
    path.write_text(f"enabled: true\nbackends:\n  ops-chat:\n    type: {BACKEND_TYPE}\n")
    return path


def test_listen_prints_each_incoming_message(
    chats: Chats, chat_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def talk(chat: Chat) -> None:
        chat.inject("/status", sender="alice", sender_id="42", chat_label="ops")
        chat.inject("/restart web", sender="bob", chat_label="ops")

    helper = chats.when_started(talk)

    code = main(["listen", "-c", str(chat_config), "--count", "2", "--timeout", "10"])

    helper.join(5)
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].endswith("[ops] alice (42) via ops-chat: /status")
    assert out[1].endswith("[ops] bob via ops-chat: /restart web")


def test_listen_json_prints_one_object_per_message(
    chats: Chats, chat_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    helper = chats.when_started(lambda chat: chat.inject("/status", sender_id="42"))

    code = main(["listen", "-c", str(chat_config), "--count", "1", "--json", "--timeout", "10"])

    helper.join(5)
    [line] = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert code == 0
    assert (record["text"], record["sender_id"], record["backend_name"]) == (
        "/status",
        "42",
        "ops-chat",
    )


def test_listen_exits_1_when_too_few_messages_arrive_in_time(
    chats: Chats, chat_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["listen", "-c", str(chat_config), "--count", "1", "--timeout", "0.2"])

    assert code == 1
    assert "got 0 of 1 messages within 0.2 s" in capsys.readouterr().err


class HangingChat(RecordingCommunicator):
    """A receiving backend whose server never answers the connection."""

    async def start(self) -> None:
        await asyncio.Event().wait()


def test_listen_gives_up_on_a_backend_that_never_starts(
    chat_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("processpype.cli._listen.START_TIMEOUT", 0.2)
    register_backend(BACKEND_TYPE, HangingChat, replace=True)
    try:
        code = main(["listen", "-c", str(chat_config)])
    finally:
        unregister_backend(BACKEND_TYPE)

    assert code == 1
    assert "ops-chat: did not start within 0.2 s" in capsys.readouterr().err


def test_listen_without_a_receiving_backend_is_a_config_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROCESSPYPE_CONFIG", raising=False)

    code = main(["listen"])

    assert code == 2
    assert "no backend in embedded default receives messages" in capsys.readouterr().err


def test_listen_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    config = tmp_path / "chat.yaml"
    config.write_text("enabled: true\nbackends:\n  inbox:\n    type: recording\n")
    env = {k: v for k, v in os.environ.items() if k != "PROCESSPYPE_CONFIG"}
    process = subprocess.Popen(
        [str(SCRIPT), "listen", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    try:
        banner = process.stderr.readline()  # blocks until the listener is up
        assert "listening on inbox" in banner

        process.send_signal(signal.SIGINT)

        _, rest = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "stopped (Ctrl-C) after 0 message(s)" in rest
    assert "Traceback" not in rest
