"""What a script that never calls close() gets at interpreter exit: real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path


def run_script(source: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_script_that_ends_without_close_delivers_all_1000_send_nowait_messages(
    tmp_path: Path,
) -> None:
    out = tmp_path / "messages.jsonl"
    completed = run_script(
        """
        import sys
        from processpype import Notifier

        notifier = Notifier({
            "enabled": True,
            "backends": {"file": {"type": "console", "path": sys.argv[1]}},
        })
        for index in range(1000):
            notifier.send_nowait(f"message {index}")
        # no close(): the exit-time flush delivers what is queued
        """,
        str(out),
    )

    assert completed.returncode == 0, completed.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["message"] for line in lines] == [f"message {i}" for i in range(1000)]
    assert "not delivered" not in completed.stderr


def test_the_exit_flush_delivers_through_backends_that_resolve_a_host_name() -> None:
    # asyncio resolves host names on a worker thread, and Python refuses new worker-thread
    # jobs once its thread pools shut down at exit: the flush must run before that.
    completed = run_script(
        """
        import asyncio
        from processpype import Notifier
        from processpype.communications.base import Communicator
        from processpype.config.models import CommunicatorBackendConfig

        class Resolving(Communicator):
            async def start(self):
                self._started = True

            async def stop(self):
                self._started = False

            async def send(self, message):
                await asyncio.sleep(0.05)  # still in flight when the script ends
                await asyncio.get_running_loop().getaddrinfo("localhost", 25)
                print("sent", message.message, flush=True)

        notifier = Notifier({"enabled": True, "backends": {}})
        notifier.add_communicator(Resolving("smtp", CommunicatorBackendConfig(type="smtp")))
        for index in range(3):
            notifier.send_nowait(f"alert {index}")
        """
    )

    assert completed.returncode == 0, completed.stderr
    assert sorted(completed.stdout.splitlines()) == ["sent alert 0", "sent alert 1", "sent alert 2"]
    assert completed.stderr == ""


def test_the_exit_flush_is_bounded_by_drain_timeout_and_reports_what_it_could_not_deliver(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    completed = run_script(
        """
        from processpype import Notifier

        notifier = Notifier(
            {"enabled": True, "backends": {"dead-smtp": {"type": "recording", "delay": 3600}}},
            drain_timeout=0.5,
        )
        for index in range(3):
            notifier.send_nowait(f"backup {index} failed")
        """
    )
    elapsed = time.monotonic() - started

    assert completed.returncode == 0, completed.stderr
    assert elapsed < 30, f"the script took {elapsed:.1f}s to exit with drain_timeout=0.5"
    # The backend had all three when the script ended: it may have sent them.
    assert "3 message(s) were being sent at interpreter exit and may have been delivered" in (
        completed.stderr
    )
    assert "not delivered" not in completed.stderr
    assert "drain_timeout=0.5s" in completed.stderr
    assert "dead-smtp" in completed.stderr
    assert "'backup 2 failed'" in completed.stderr


def test_the_exit_report_also_goes_to_the_log_when_logging_is_configured() -> None:
    completed = run_script(
        """
        import logging, sys
        from processpype import Notifier

        logging.basicConfig(stream=sys.stdout, format="LOG %(name)s %(message)s")
        notifier = Notifier(
            {"enabled": True, "backends": {"hang": {"type": "recording", "delay": 3600}}},
            drain_timeout=0.2,
        )
        notifier.send_nowait("stuck")
        """
    )

    assert completed.returncode == 0, completed.stderr
    assert "were being sent at interpreter exit" in completed.stderr
    assert "LOG processpype.communications.notifier" in completed.stdout
    assert "stuck" in completed.stdout


def test_a_closed_notifier_adds_nothing_at_exit(tmp_path: Path) -> None:
    completed = run_script(
        """
        from processpype import Notifier

        with Notifier({"enabled": True, "backends": {"rec": {"type": "recording"}}}) as n:
            n.send("done")
        print("closed:", n.closed)
        """
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "closed: True"
    assert completed.stderr == ""


def test_a_notifier_inherited_through_fork_refuses_to_send_in_the_child() -> None:
    completed = run_script(
        """
        import os, warnings
        from processpype import Notifier
        from processpype.communications.errors import NotifierClosedError

        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        notifier = Notifier({"enabled": True, "backends": {"rec": {"type": "recording"}}})
        pid = os.fork()
        if pid == 0:
            try:
                notifier.send("from the child", timeout=5)
            except NotifierClosedError as exc:
                print("child:", exc, flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent:", notifier.send("from the parent").ok, flush=True)
        """
    )

    assert completed.returncode == 0, completed.stderr
    child, parent = completed.stdout.strip().splitlines()
    assert "created before os.fork()" in child
    assert "create a new Notifier in this process" in child
    assert parent == "parent: True"
