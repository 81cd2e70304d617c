"""The terminal kit every ``processpype-notify`` command shares (private to the CLI).

Exit codes and ``CLIError``; the argument parser class and the argument types; the
status line, tables and indentation of what the commands print; the CLI's logging; and
running a command's coroutine with Ctrl-C and SIGTERM handled. Nothing here imports
pydantic or a backend, so building the parser (``--help``) stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import logging
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

if TYPE_CHECKING:
    from processpype.foundation.models import MessageSeverity

PROG = "processpype-notify"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

STATUS_AFTER = 1.0  # seconds before a pending step shows a status line (terminal only)
TICK = 0.25  # how often the status line is refreshed
STOP_TIMEOUT = 10.0  # bound on stopping the backends at exit

# The CLI reports outcomes and start failures itself; these loggers would say it twice.
_QUIET_LOGGERS = frozenset(
    {"processpype.communications.dispatcher", "processpype.communications.backends"}
)

logger = logging.getLogger("processpype.cli")


class CLIError(Exception):
    """An error the CLI reports as one message on stderr, ending with ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = EXIT_USAGE, prog: str = PROG) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and raise instead of exiting)."""

    def error(self, message: str) -> NoReturn:
        """Raise a usage ``CLIError`` naming the flag; argparse would print the usage first."""
        raise CLIError(f"{message} (see {self.prog} --help)", exit_code=EXIT_USAGE, prog=self.prog)


# -- argument types -----------------------------------------------------------------------


def severity(value: str) -> MessageSeverity:
    """``-s``: a severity name in any case."""
    from processpype.foundation.models import MessageSeverity

    try:
        return MessageSeverity.coerce(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def metadata_item(value: str) -> tuple[str, str]:
    """``-m KEY=VALUE``."""
    key, sep, item = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key.strip(), item


def timeout(value: str) -> float | None:
    """``--timeout SECONDS``: 0 means no limit (None)."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if seconds < 0 or seconds != seconds:
        raise argparse.ArgumentTypeError(f"expected 0 (no limit) or more seconds, got {value!r}")
    return seconds or None


def port(value: str) -> int:
    """``--port N``: 0 to 65535."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {number}")
    return number


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argument type for a whole number of ``minimum`` or more (``--count``, ...)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {number}")
        return number

    return parse


def auth(value: str) -> tuple[str, str]:
    """``--auth USER:PASSWORD``; the error never echoes the value."""
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        # Never echo the value: it holds a password.
        raise argparse.ArgumentTypeError("expected USER:PASSWORD, both non-empty")
    return user, password


def add_command(
    commands: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    parents: Sequence[argparse.ArgumentParser],
    help: str,
    **texts: str,
) -> argparse.ArgumentParser:
    """Add the sub-command ``name``, run by ``handler``; return its parser for its arguments.

    ``texts`` are more of argparse's texts for it (``description``, ``usage``).
    """
    parser: argparse.ArgumentParser = commands.add_parser(
        name, parents=list(parents), help=help, **texts
    )
    parser.set_defaults(handler=handler)
    return parser


def add_timeout(parser: argparse.ArgumentParser, default: float | None, help: str) -> None:
    """Add ``--timeout SECONDS`` (0: no limit) to ``parser``."""
    parser.add_argument("--timeout", type=timeout, default=default, metavar="SECONDS", help=help)


# -- what the commands print --------------------------------------------------------------


class StatusLine:
    """A one-line progress note on stderr, shown only when stderr is a terminal."""

    current: StatusLine | None = None
    """The status line on screen, which log output erases before writing."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        try:
            self._enabled = stream.isatty()
        except (AttributeError, ValueError):
            self._enabled = False
        self._shown = False

    def show(self, text: str) -> None:
        """Replace the status line with ``text``."""
        if not self._enabled:
            return
        width = max(shutil.get_terminal_size().columns - 1, 20)
        self._stream.write("\r\x1b[K" + text[:width])
        self._stream.flush()
        self._shown = True
        StatusLine.current = self

    def clear(self) -> None:
        """Erase the status line, if one is shown."""
        if self._shown:
            self._shown = False
            StatusLine.current = None
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def indent(text: str, prefix: str = "  ") -> str:
    """``text`` with every non-empty line indented by ``prefix``."""
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def table(rows: Sequence[Sequence[str]], prefix: str = "  ") -> str:
    """``rows`` as aligned columns (the last column is not padded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append(prefix + "  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


# -- logging ------------------------------------------------------------------------------


@contextlib.contextmanager
def cli_logging(debug: bool, prog: str) -> Iterator[None]:
    """Show processpype's log records on stderr while the command runs (all under --debug)."""
    library = logging.getLogger("processpype")
    saved = (library.level, library.propagate)
    handler = _LogHandler(sys.stderr)
    if debug:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
        library.setLevel(logging.DEBUG)
    else:
        handler.setFormatter(_LowerLevelFormatter(f"{prog}: %(levelname)s: %(message)s"))
        handler.addFilter(lambda record: record.name not in _QUIET_LOGGERS)
        library.setLevel(logging.WARNING)
    library.addHandler(handler)
    library.propagate = False
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(saved[0])
        library.propagate = saved[1]


class _LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes log records to stderr, erasing a shown status line first."""

    def emit(self, record: logging.LogRecord) -> None:
        """Clear the status line, then write ``record``."""
        status = StatusLine.current
        if status is not None:
            status.clear()
        super().emit(record)


class _LowerLevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # A copy, so other handlers still see "WARNING".
        record = copy.copy(record)
        record.levelname = record.levelname.lower()
        return super().format(record)


# -- running a coroutine, with Ctrl-C and SIGTERM -----------------------------------------


class Interrupt:
    """Which signal stopped the command (Ctrl-C unless SIGTERM was received)."""

    def __init__(self) -> None:
        self.signal = signal.SIGINT

    @property
    def name(self) -> str:
        """How the user sees the signal."""
        return "SIGTERM" if self.signal == signal.SIGTERM else "Ctrl-C"

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as shells report it."""
        return EXIT_TERMINATED if self.signal == signal.SIGTERM else EXIT_INTERRUPTED


def run(make: Callable[[Interrupt], Coroutine[Any, Any, int]]) -> int:
    """Run a command's coroutine on a fresh loop; Ctrl-C or SIGTERM cancels it cleanly.

    The first Ctrl-C cancels the coroutine, which reports what it had not finished and
    cleans up; a second Ctrl-C stops at once.
    """
    interrupt = Interrupt()

    async def guarded() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        on_main_thread = threading.current_thread() is threading.main_thread()
        if on_main_thread and task is not None:
            main_task = task

            def terminate() -> None:
                interrupt.signal = signal.SIGTERM
                main_task.cancel()

            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGTERM, terminate)
        try:
            return await make(interrupt)
        finally:
            if on_main_thread:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(signal.SIGTERM)

    with asyncio.Runner() as runner:
        try:
            return runner.run(guarded())
        except (KeyboardInterrupt, asyncio.CancelledError):
            # A second Ctrl-C, or one that came before the command could handle it.
            print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
            return interrupt.exit_code


class Terminated(Exception):
    """SIGTERM arrived while a blocking command ran in the foreground."""


def stop_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM raise ``Terminated`` (like Ctrl-C); return a function that undoes it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def terminated(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminated)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
