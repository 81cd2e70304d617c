"""handle_signals=True: SIGTERM and SIGINT flush, report and chain; real subprocesses."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from processpype.communications.notifier import Notifier
from processpype.testing.smtp import SMTPTestServer

SCRIPT_HEAD = """
import os, signal, sys, time
from processpype import Notifier

config = {
    "enabled": True,
    "backends": {
        "mail": {
            "type": "email", "host": "127.0.0.1", "port": int(sys.argv[1]),
            "use_tls": False, "start_tls": False, "timeout": 5,
            "from_address": "alerts@example.com", "default_recipients": ["ops@example.com"],
        },
    },
}
"""


@pytest.fixture
def smtp() -> Iterator[SMTPTestServer]:
    with SMTPTestServer(record=False) as server:
        yield server


def start_script(source: str, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT_HEAD + textwrap.dedent(source), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def signal_when_ready(process: subprocess.Popen[str], signum: int) -> tuple[str, str]:
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "queued"
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    return out, err


def test_sigterm_with_100_messages_queued_delivers_them_all_then_exits_143(
    smtp: SMTPTestServer,
) -> None:
    process = start_script(
        """
        notifier = Notifier(config, handle_signals=True)
        for index in range(100):
            notifier.send_nowait(f"alert {index}")
        print("queued", flush=True)
        signal.pause()  # until the test's signal arrives
        print("not reached", flush=True)
        """,
        smtp.port,
    )
    out, err = signal_when_ready(process, signal.SIGTERM)

    assert process.returncode == 128 + signal.SIGTERM, err
    assert smtp.message_count == 100
    assert "not reached" not in out
    assert "not delivered" not in err


def test_sigterm_reports_on_stderr_what_the_drain_timeout_left_undelivered() -> None:
    # A server that accepts the connection and never says a word.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        process = start_script(
            """
            notifier = Notifier(config, handle_signals=True, drain_timeout=0.5,
                                start_timeout=0.1)
            for index in range(3):
                notifier.send_nowait(f"alert {index}")
            print("queued", flush=True)
            signal.pause()  # until the test's signal arrives
            """,
            silent.getsockname()[1],
        )
        _, err = signal_when_ready(process, signal.SIGTERM)

    assert process.returncode == 128 + signal.SIGTERM
    assert "3 message(s) were not delivered on SIGTERM" in err
    assert "'alert 2'" in err


def test_sigterm_reports_an_edit_it_cut_short_as_may_have_been_applied(
    smtp: SMTPTestServer,
) -> None:
    process = start_script(
        """
        import asyncio, threading
        from processpype.testing.recording import RecordingCommunicator

        editing = threading.Event()

        class SlowEdits(RecordingCommunicator):
            async def edit(self, reference, message):
                editing.set()
                await asyncio.Event().wait()  # a chat service that never answers the edit

        notifier = Notifier({"enabled": True}, handle_signals=True, drain_timeout=0.3)
        notifier.add_communicator(SlowEdits("chat"))
        report = notifier.send("deploying")
        threading.Thread(target=notifier.edit, args=(report, "deployed"), daemon=True).start()
        assert editing.wait(10)
        print("queued", flush=True)
        signal.pause()  # until the test's signal arrives
        """,
        smtp.port,
    )
    _, err = signal_when_ready(process, signal.SIGTERM)

    assert process.returncode == 128 + signal.SIGTERM, err
    assert "were being sent on SIGTERM and may have been delivered" in err
    assert "-> chat (may have been delivered) (an edit into this text): 'deployed'" in err


def test_sigterm_is_passed_on_to_the_handler_the_application_installed(
    smtp: SMTPTestServer,
) -> None:
    process = start_script(
        """
        def application_handler(signum, frame):
            # os.write: print() inside a signal handler may re-enter stdout's buffer.
            os.write(1, b"application handler ran\\n")
            sys.exit(0)

        signal.signal(signal.SIGTERM, application_handler)
        notifier = Notifier(config, handle_signals=True)
        for index in range(20):
            notifier.send_nowait(f"alert {index}")
        print("queued", flush=True)
        signal.pause()  # until the test's signal arrives
        """,
        smtp.port,
    )
    out, err = signal_when_ready(process, signal.SIGTERM)

    assert process.returncode == 0, err
    assert out.strip() == "application handler ran"
    assert smtp.message_count == 20


def test_sigint_flushes_then_raises_keyboard_interrupt(smtp: SMTPTestServer) -> None:
    process = start_script(
        """
        notifier = Notifier(config, handle_signals=True)
        for index in range(20):
            notifier.send_nowait(f"alert {index}")
        try:
            print("queued", flush=True)
            signal.pause()  # until the test's signal arrives
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
        """,
        smtp.port,
    )
    out, err = signal_when_ready(process, signal.SIGINT)

    assert process.returncode == 0, err
    assert out.strip() == "KeyboardInterrupt"
    assert smtp.message_count == 20


def test_close_puts_the_previous_signal_handlers_back() -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    notifier = Notifier({"enabled": True}, handle_signals=True)
    assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    notifier.close(timeout=1)
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_handle_signals_off_the_main_thread_is_refused_with_the_reason() -> None:
    import threading

    errors: list[BaseException] = []

    def make() -> None:
        try:
            Notifier({"enabled": True}, handle_signals=True, start=False)
        except ValueError as exc:
            errors.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join(10)
    assert len(errors) == 1
    assert "main thread" in str(errors[0])


def test_without_handle_signals_sigterm_ends_the_process_at_once_as_documented() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        process = start_script(
            """
            notifier = Notifier(config, start_timeout=0.1)
            for index in range(3):
                notifier.send_nowait(f"alert {index}")
            print("queued", flush=True)
            signal.pause()  # until the test's signal arrives
            """,
            silent.getsockname()[1],
        )
        _, err = signal_when_ready(process, signal.SIGTERM)

    # Killed by the signal: no atexit, no exit report, the three messages gone.
    assert process.returncode == -signal.SIGTERM
    assert "not delivered" not in err


def test_a_dropped_notifier_puts_the_previous_signal_handlers_back() -> None:
    import gc
    import warnings

    before = signal.getsignal(signal.SIGTERM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        notifier = Notifier({"enabled": True}, handle_signals=True)
        assert signal.getsignal(signal.SIGTERM) != before
        del notifier
        gc.collect()
    assert signal.getsignal(signal.SIGTERM) == before
