"""``processpype-notify run``: run a command and notify how it ended (private to the CLI).

::

    processpype-notify run [-c CONFIG] [-l LABEL] [--name NAME] [--stderr-lines N]
                           -- COMMAND [ARGS...]

The command's stdin and stdout are its own (inherited); its stderr is passed through
as it comes, and its last lines are kept for the notification. When it ends, one
message goes to LABEL: its exit status and duration (info when it succeeded, error when
it failed, with the last lines of stderr; warning when Ctrl-C interrupted it). The exit
status is the command's own, 128+N when signal N ended it, 127 when it could not be
found and 126 when it could not be run. SIGTERM and SIGHUP sent to processpype-notify
are passed on to the command; Ctrl-C reaches the command from the terminal, and
processpype-notify waits for it to end and reports.

The backends connect while the command runs, so a slow login does not delay it; they
only send (a bot with ``listen_to_commands`` does not listen here, nor compete for an
outbox's update lease). The message names the command line (shortened): pass ``--name``
when its arguments hold a secret. The message is sent by a ``Notifier``, the same path
a program's own notifications take.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from processpype.cli._config import resolve_config
from processpype.cli._terminal import EXIT_USAGE, CLIError, add_command, whole_number
from processpype.communications._jobtext import format_duration, shorten

if TYPE_CHECKING:
    from processpype.config.models import CommunicationsConfig

_NAME_CHARS = 100
_TAIL_BYTES = 64 * 1024  # stderr kept for the notification (the end of it)
_NOTIFY_TIMEOUT = 30.0
EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126


_HELP = "run a command and notify its exit status, duration and stderr tail"
_DESCRIPTION = (
    "Run COMMAND with its stdin, stdout and stderr passed through, then "
    "send its exit status, duration and (on failure) the last lines of its stderr to "
    "LABEL. Exits with the command's status (128+N when signal N ended it)."
)
_USAGE = "%(prog)s [-c CONFIG] [-l LABEL] [--name NAME] [--stderr-lines N] -- COMMAND [ARGS...]"


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``run`` subcommand to ``processpype-notify``'s subparsers."""
    run = add_command(
        commands, "run", command, parents, _HELP, description=_DESCRIPTION, usage=_USAGE
    )
    run.add_argument("-l", "--label", default="default", help="routing label (default: default)")
    run.add_argument("--name", help="how the message names the job (default: the command line)")
    run.add_argument(
        "--stderr-lines",
        type=whole_number(0),
        default=20,
        metavar="N",
        help="last lines of stderr sent when the command fails (default 20, 0: none)",
    )
    run.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="COMMAND", help="the command and its arguments"
    )


def command(args: argparse.Namespace) -> int:
    """Run ``args.command``, notify its outcome, and return its exit status."""
    from processpype.communications.notifier import Notifier

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CLIError("run needs a command after --, e.g. run -- make test", exit_code=EXIT_USAGE)
    if args.config == "-":
        raise CLIError(
            "run passes stdin to the command: give -c the path of a config file, not '-'"
        )
    config, _ = resolve_config(args.config)
    config = _send_only(config)
    name = args.name or shorten(shlex.join(command), _NAME_CHARS)
    notifier = Notifier(config, start=False, name="processpype-notify-run")
    # Connect while the command runs: a slow login must not delay it.
    starting = threading.Thread(target=_start_quietly, args=(notifier,), daemon=True)
    starting.start()
    try:
        outcome = _run_child(command)
        text, severity, subject = _describe(name, outcome, args.stderr_lines)
        metadata: dict[str, Any] = {
            "command": name,
            "exit_status": outcome.status,
            "duration": round(outcome.duration, 3),
        }
        if outcome.signal is not None:
            metadata["signal"] = _signal_name(outcome.signal)
        starting.join()
        try:
            report = notifier.send(
                text,
                label=args.label,
                severity=severity,
                subject=subject,
                source="processpype-notify run",
                metadata=metadata,
                timeout=_NOTIFY_TIMEOUT,
            )
        except Exception as exc:
            sys.stderr.write(f"{args.prog}: the notification was not sent: {exc}\n")
        else:
            if not report.ok:
                sys.stderr.write(f"{args.prog}: the notification was not delivered: {report}\n")
    finally:
        notifier.close()
    return outcome.exit_code


def _send_only(config: CommunicationsConfig) -> CommunicationsConfig:
    """``config`` with listening turned off: ``run`` sends one message and leaves.

    A listening bot here would take updates (or an outbox's update lease) from the
    process that answers them, for as long as the command runs.
    """
    backends = {
        name: backend.model_copy(update={"listen_to_commands": False})
        if getattr(backend, "listen_to_commands", False)
        else backend
        for name, backend in config.backends.items()
    }
    return config.model_copy(update={"backends": backends})


def _start_quietly(notifier: Any) -> None:
    # A start failure is logged by the notifier and reported by the send that follows.
    with contextlib.suppress(Exception):
        notifier.start()


class _Outcome:
    """How the command ended."""

    def __init__(
        self,
        *,
        status: int | None,
        duration: float,
        stderr_tail: bytes,
        launch_error: OSError | None = None,
    ) -> None:
        self.status = status
        self.duration = duration
        self.stderr_tail = stderr_tail
        self.launch_error = launch_error

    @property
    def signal(self) -> int | None:
        """The signal that ended the command, if one did."""
        return -self.status if self.status is not None and self.status < 0 else None

    @property
    def exit_code(self) -> int:
        """The status a shell would report: 128+N for signal N, 127/126 for no launch."""
        if self.launch_error is not None:
            if isinstance(self.launch_error, FileNotFoundError):
                return EXIT_NOT_FOUND
            return EXIT_CANNOT_RUN
        assert self.status is not None
        return 128 + -self.status if self.status < 0 else self.status


def _run_child(command: list[str]) -> _Outcome:
    started = time.monotonic()
    try:
        # Running the user's own command line is what this command is for.
        child = subprocess.Popen(command, stderr=subprocess.PIPE)  # noqa: S603
    except OSError as exc:
        return _Outcome(
            status=None, duration=time.monotonic() - started, stderr_tail=b"", launch_error=exc
        )
    tail = bytearray()
    assert child.stderr is not None
    pump = threading.Thread(target=_pass_stderr, args=(child.stderr, tail), daemon=True)
    pump.start()
    with _signals_passed_to(child):
        while True:
            try:
                child.wait()
                break
            except KeyboardInterrupt:  # Ctrl-C reached the command too: wait for its end
                continue
    pump.join(5.0)
    return _Outcome(
        status=child.returncode, duration=time.monotonic() - started, stderr_tail=bytes(tail)
    )


def _pass_stderr(stream: IO[bytes], tail: bytearray) -> None:
    """Copy the command's stderr to ours as it comes, keeping its last bytes."""
    out = getattr(sys.stderr, "buffer", None)
    fd = stream.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        tail += chunk
        if len(tail) > _TAIL_BYTES:
            del tail[: len(tail) - _TAIL_BYTES]
        try:
            if out is not None:
                out.write(chunk)
                out.flush()
            else:
                sys.stderr.write(chunk.decode("utf-8", "replace"))
                sys.stderr.flush()
        except (OSError, ValueError):
            pass  # our stderr is gone; keep reading so the command never blocks on it
    stream.close()


@contextlib.contextmanager
def _signals_passed_to(child: subprocess.Popen[bytes]) -> Any:
    """While the command runs: SIGTERM and SIGHUP go to it; Ctrl-C is left to it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            previous[signum] = signal.signal(signum, forward)
    # The terminal sends Ctrl-C to the command as well: it decides, we wait and report.
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _describe(name: str, outcome: _Outcome, stderr_lines: int) -> tuple[str, str, str]:
    took = format_duration(outcome.duration)
    if outcome.launch_error is not None:
        error = outcome.launch_error
        why = error.strerror or str(error)
        return (
            f"\N{CROSS MARK} {name} could not be started: {why}",
            "error",
            f"{name} could not start",
        )
    signum = outcome.signal
    if signum == signal.SIGINT:
        return (
            f"\N{WARNING SIGN} {name} was interrupted (Ctrl-C) after {took}",
            "warning",
            f"{name} interrupted",
        )
    if outcome.status == 0:
        return (
            f"\N{WHITE HEAVY CHECK MARK} {name} succeeded in {took} (exit status 0)",
            "info",
            f"{name} succeeded",
        )
    how = (
        f"ended by signal {_signal_name(signum)} (exit status {outcome.exit_code})"
        if signum is not None
        else f"exit status {outcome.status}"
    )
    text = f"\N{CROSS MARK} {name} failed after {took}: {how}"
    lines = _last_lines(outcome.stderr_tail, stderr_lines)
    if lines:
        text += f"\n\nlast lines of stderr:\n{lines}"
    return text, "error", f"{name} failed"


def _last_lines(data: bytes, count: int) -> str:
    if count == 0 or not data.strip():
        return ""
    lines = data.decode("utf-8", "replace").rstrip("\n").splitlines()
    return "\n".join(line.rstrip("\r") for line in lines[-count:])


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
