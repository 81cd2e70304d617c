"""``processpype-notify run``: a command's exit reported, its output passed through."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from processpype.cli import main

PY = sys.executable


def config(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "notifications.jsonl"
    path = tmp_path / "notify.yaml"
    path.write_text(
        "communications:\n"
        "  enabled: true\n"
        "  backends:\n"
        "    out:\n"
        "      type: console\n"
        f"      path: {json.dumps(str(out))}\n"
        "      labels: [default, ops]\n"
    )
    return path, out


def run(
    tmp_path: Path, *command: str, flags: tuple[str, ...] = (), stdin: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    path, out = config(tmp_path)
    done = subprocess.run(
        [PY, "-m", "processpype", "run", "-c", str(path), *flags, "--", *command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return done, records


def test_a_command_that_succeeds_is_reported_and_exits_0(tmp_path: Path) -> None:
    done, [record] = run(tmp_path, PY, "-c", "print('hello')", flags=("--name", "greet"))

    assert done.returncode == 0
    assert done.stdout == "hello\n"
    assert record["severity"] == "info"
    assert record["message"].startswith("\N{WHITE HEAVY CHECK MARK} greet succeeded in ")
    assert record["metadata"]["exit_status"] == 0


def test_stdin_stdout_and_stderr_are_passed_through(tmp_path: Path) -> None:
    script = (
        "import sys; data = sys.stdin.read(); print(data.upper()); print('warn', file=sys.stderr)"
    )
    done, _ = run(tmp_path, PY, "-c", script, stdin="rows\n")

    assert done.stdout == "ROWS\n\n"
    assert "warn\n" in done.stderr


def test_a_failure_exits_with_the_status_and_sends_the_stderr_tail(tmp_path: Path) -> None:
    script = "import sys\nfor i in range(30): print(f'line {i}', file=sys.stderr)\nsys.exit(3)\n"
    done, [record] = run(
        tmp_path, PY, "-c", script, flags=("--name", "etl", "--stderr-lines", "2", "-l", "ops")
    )

    assert done.returncode == 3
    assert record["label"] == "ops"
    assert record["severity"] == "error"
    assert record["message"].startswith("\N{CROSS MARK} etl failed after ")
    assert "exit status 3" in record["message"]
    assert record["message"].endswith("last lines of stderr:\nline 28\nline 29")
    assert "line 0\n" in done.stderr  # all of it still reached our stderr


def test_a_command_ended_by_a_signal_exits_128_plus_n(tmp_path: Path) -> None:
    script = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    done, [record] = run(tmp_path, PY, "-c", script, flags=("--name", "doomed"))

    assert done.returncode == 128 + signal.SIGTERM
    assert "ended by signal SIGTERM (exit status 143)" in record["message"]
    assert record["metadata"]["signal"] == "SIGTERM"


def test_sigterm_to_run_is_passed_to_the_command(tmp_path: Path) -> None:
    path, out = config(tmp_path)
    script = "import signal; print('ready', flush=True); signal.pause()"
    child = subprocess.Popen(
        [
            PY,
            "-m",
            "processpype",
            "run",
            "-c",
            str(path),
            "--name",
            "sleeper",
            "--",
            PY,
            "-c",
            script,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with child:  # closes its pipes
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            child.send_signal(signal.SIGTERM)
            child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

    assert child.returncode == 128 + signal.SIGTERM
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert "sleeper failed after" in record["message"]
    assert "SIGTERM" in record["message"]


def test_a_command_that_cannot_be_found_exits_127(tmp_path: Path) -> None:
    done, [record] = run(tmp_path, str(tmp_path / "no-such-program"))

    assert done.returncode == 127
    assert "could not be started" in record["message"]


def test_a_command_that_cannot_be_run_exits_126(tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)

    done, [record] = run(tmp_path, str(script))

    assert done.returncode == 126
    assert done.stdout == ""
    assert "could not be started" in record["message"]
    assert record["severity"] == "error"


def test_run_without_a_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--"]) == 2
    assert "run needs a command after --" in capsys.readouterr().err


def test_run_refuses_a_config_read_from_stdin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-c", "-", "--", "true"]) == 2
    assert "passes stdin to the command" in capsys.readouterr().err


def test_a_shell_commands_exit_status_is_kept(tmp_path: Path) -> None:
    done, [record] = run(tmp_path, "sh", "-c", "exit 42")

    assert done.returncode == 42
    assert record["metadata"]["exit_status"] == 42


def test_ctrl_c_reaches_the_command_and_is_reported_as_interrupted(tmp_path: Path) -> None:
    path, out = config(tmp_path)
    script = "import signal; print('ready', flush=True); signal.pause()"
    # A new session is a terminal's process group: Ctrl-C goes to both processes.
    child = subprocess.Popen(
        [
            PY,
            "-m",
            "processpype",
            "run",
            "-c",
            str(path),
            "--name",
            "train",
            "--",
            PY,
            "-c",
            script,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    with child:  # closes its pipes
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            os.killpg(child.pid, signal.SIGINT)
            child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

    assert child.returncode == 128 + signal.SIGINT
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["severity"] == "warning"
    assert "train was interrupted (Ctrl-C)" in record["message"]


def test_a_config_error_stops_run_before_the_command_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("communications:\n  backends:\n    out: {type: console, colour: red}\n")
    marker = tmp_path / "ran"
    done = subprocess.run(
        [
            PY,
            "-m",
            "processpype",
            "run",
            "-c",
            str(bad),
            "--",
            PY,
            "-c",
            f"open({str(marker)!r}, 'w')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert "config error" in done.stderr
    assert not marker.exists()
