"""``processpype-notify``: send a message, check a config, listen, run a test SMTP server.

Commands::

    processpype-notify send [-c CONFIG] [-l LABEL] [-s SEVERITY] [--subject S]
                            [-m KEY=VALUE ...] [MESSAGE | -]
    processpype-notify check [CONFIG] [--connect]
    processpype-notify listen [-c CONFIG] [--count N] [--json]
    processpype-notify smtpd [--port N] [--tls starttls|implicit] [--auth USER:PASSWORD]
    processpype-notify run [-c CONFIG] [-l LABEL] [--name NAME] -- COMMAND [ARGS...]
    processpype-notify worker [-c CONFIG] [--concurrency N]
    processpype-notify outbox status|retry-dead [-c CONFIG]

The config comes from ``-c``, else ``$PROCESSPYPE_CONFIG``, else the embedded default
(a ``console`` backend on label ``default``), so ``processpype-notify send "hello"`` works
on a machine with no config at all.

Exit codes: 0 success; 1 a backend failed or could not connect; 2 a usage or config
error; 130 interrupted by Ctrl-C (143 by SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from processpype.communications.errors import ConfigError, describe_error
from processpype.communications.models import MessageSeverity

if TYPE_CHECKING:
    from email.message import Message

    from processpype.communications.base import Communicator
    from processpype.communications.delivery import DeliveryResult
    from processpype.communications.dispatcher import CommunicationDispatcher
    from processpype.communications.models import Attachment, IncomingMessage, OutgoingMessage
    from processpype.config.models import CommunicationsConfig, CommunicatorBackendConfig
    from processpype.testing.smtp import SMTPEnvelope

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CLIError",
    "build_parser",
    "main",
    "resolve_config",
]

PROG = "processpype-notify"
CONFIG_ENV_VAR = "PROCESSPYPE_CONFIG"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

DEFAULT_CONFIG: dict[str, Any] = {
    "enabled": True,
    "backends": {"console": {"type": "console", "labels": ["default"]}},
}
"""The config used when neither ``-c`` nor ``$PROCESSPYPE_CONFIG`` names one."""

DEFAULT_SOURCE = "embedded default"

_STATUS_AFTER = 1.0  # seconds before a pending send shows a status line (terminal only)
_TICK = 0.25  # how often the status line is refreshed
_STDIN_ATTACHMENT = "stdin.bin"
_STOP_TIMEOUT = 10.0  # bound on stopping the backends at exit
_INTERRUPT_GRACE = 5.0  # after Ctrl-C or SIGTERM, how long sends under way may finish
# The CLI reports outcomes and start failures itself; these loggers would say it twice.
_QUIET_LOGGERS = frozenset(
    {"processpype.communications.dispatcher", "processpype.communications.backends"}
)


class CLIError(Exception):
    """An error the CLI reports as one message on stderr, ending with ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = EXIT_USAGE, prog: str = PROG) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and raise instead of exiting)."""

    def error(self, message: str) -> NoReturn:
        """Raise a usage ``CLIError`` naming the flag; argparse would print the usage first."""
        raise CLIError(f"{message} (see {self.prog} --help)", exit_code=EXIT_USAGE, prog=self.prog)


# -- argument types -----------------------------------------------------------------------


def _severity(value: str) -> MessageSeverity:
    try:
        return MessageSeverity.coerce(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _metadata_item(value: str) -> tuple[str, str]:
    key, sep, item = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key.strip(), item


def _timeout(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if seconds < 0 or seconds != seconds:
        raise argparse.ArgumentTypeError(f"expected 0 (no limit) or more seconds, got {value!r}")
    return seconds or None


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {port}")
    return port


def _count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {count}")
    return count


def _auth(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        # Never echo the value: it holds a password.
        raise argparse.ArgumentTypeError("expected USER:PASSWORD, both non-empty")
    return user, password


# -- parser -------------------------------------------------------------------------------


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The argument parser of ``processpype-notify`` (``prog`` is the name shown in help)."""
    from processpype import __version__

    debug = _Parser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show library logs and a traceback with every error",
    )
    config = _Parser(add_help=False)
    config.add_argument(
        "-c",
        "--config",
        metavar="CONFIG",
        help=f"YAML config file ('-' reads stdin); default ${CONFIG_ENV_VAR}, "
        "else a console backend on label 'default'",
    )

    parser = _Parser(
        prog=prog,
        description="Send notifications through processpype backends, check a config, "
        "listen for incoming messages, or run a local SMTP server to try email settings.",
        epilog="Exit codes: 0 ok, 1 a backend failed, 2 usage or config error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show library logs and tracebacks with errors"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    send = commands.add_parser(
        "send",
        parents=[debug, config],
        help="send a message and print each backend's outcome",
        description="Send MESSAGE to every backend of LABEL and print one line per backend "
        "with its outcome. Exit 0 when none failed, 1 when any failed.",
    )
    send.add_argument("message", nargs="?", metavar="MESSAGE", help="the text; '-' reads stdin")
    send.add_argument("-l", "--label", default="default", help="routing label (default: default)")
    send.add_argument(
        "-s",
        "--severity",
        type=_severity,
        default=MessageSeverity.INFO,
        help="debug, info, warning, error or critical, any case (default: info)",
    )
    send.add_argument("--subject", help="subject line (email)")
    send.add_argument("--source", help="what produced the message, e.g. the job's name")
    send.add_argument(
        "-m",
        "--metadata",
        type=_metadata_item,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata for the backends (repeat it; a repeated KEY gives a list), "
        "e.g. -m recipients=ops@example.com",
    )
    send.add_argument(
        "--timeout",
        type=_timeout,
        default=30.0,
        metavar="SECONDS",
        help="give up on backends without an outcome after this long (0: no limit; default 30)",
    )
    send.add_argument(
        "-a",
        "--attach",
        action="append",
        default=[],
        metavar="FILE",
        help="attach FILE (repeat it for more); '-' reads the file from stdin",
    )
    send.add_argument(
        "--attach-name",
        metavar="NAME",
        help=f"file name of the attachment read from stdin (default: {_STDIN_ATTACHMENT})",
    )
    send.add_argument(
        "-q", "--quiet", action="store_true", help="print only outcomes that are not 'delivered'"
    )
    send.set_defaults(handler=_cmd_send)

    check = commands.add_parser(
        "check",
        parents=[debug, config],
        help="validate a config, show it with secrets masked and its label routes",
        description="Validate CONFIG, print it with every secret masked, and list which "
        "label reaches which backend. --connect also starts each backend.",
    )
    check.add_argument("config_file", nargs="?", metavar="CONFIG", help="the YAML config file")
    check.add_argument(
        "--connect", action="store_true", help="start each backend and report whether it works"
    )
    check.add_argument(
        "--timeout",
        type=_timeout,
        default=15.0,
        metavar="SECONDS",
        help="how long each backend may take to start with --connect (default 15)",
    )
    check.set_defaults(handler=_cmd_check)

    listen = commands.add_parser(
        "listen",
        parents=[debug, config],
        help="print incoming messages until interrupted",
        description="Start the backends that receive messages (e.g. Telegram with "
        "listen_to_commands: true) and print every incoming message until Ctrl-C.",
    )
    listen.add_argument("--count", type=_count, metavar="N", help="exit after N messages")
    listen.add_argument(
        "--timeout",
        type=_timeout,
        default=None,
        metavar="SECONDS",
        help="stop after this long (exit 1 if --count messages did not arrive)",
    )
    listen.add_argument("--json", action="store_true", help="print one JSON object per message")
    listen.set_defaults(handler=_cmd_listen)

    smtpd = commands.add_parser(
        "smtpd",
        parents=[debug],
        help="run a local SMTP test server and print every mail it receives",
        description="Run processpype's SMTP test server in the foreground and print each "
        "mail it receives, to try email settings without a real server. Ctrl-C stops it.",
    )
    smtpd.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    smtpd.add_argument(
        "--port", type=_port, default=8025, help="port to bind (default 8025; 0 picks one)"
    )
    smtpd.add_argument(
        "--tls", choices=["starttls", "implicit"], help="offer STARTTLS or speak implicit TLS"
    )
    smtpd.add_argument(
        "--auth", type=_auth, metavar="USER:PASSWORD", help="require AUTH with these credentials"
    )
    smtpd.set_defaults(handler=_cmd_smtpd)

    from processpype._cli_run import add_run_command  # run: its own module

    add_run_command(commands, parents=[debug, config])

    from processpype._cli_outbox import add_outbox_commands

    add_outbox_commands(commands, debug=debug, config=config)
    return parser


# -- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run ``processpype-notify`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    name = prog or PROG
    parser = build_parser(name)
    try:
        args = parser.parse_args(arguments)
    except CLIError as exc:
        return _report(exc, exc.exit_code, debug=False, prog=exc.prog)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    debug = bool(getattr(args, "debug", False))
    args.prog = name
    if args.command is None:
        return _report(
            CLIError("choose a command: send, check, listen, smtpd, run, worker or outbox"),
            EXIT_USAGE,
            debug=False,
            prog=name,
            hint=f"see {name} --help",
        )
    handler: Callable[[argparse.Namespace], int] = args.handler
    with _cli_logging(debug, name):
        try:
            return handler(args)
        except CLIError as exc:
            return _report(exc, exc.exit_code, debug=debug, prog=name)
        except ConfigError as exc:
            return _report(exc, EXIT_USAGE, debug=debug, prog=name, kind="config error")
        except KeyboardInterrupt:
            print(f"{name}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader went away (e.g. `| head`): nothing left to tell anyone. Point
            # stdout at devnull so the flush at exit does not raise again.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return EXIT_FAILED
        except Exception as exc:
            return _report(
                exc,
                EXIT_FAILED,
                debug=debug,
                prog=name,
                kind="unexpected error",
                describe=True,
                hint=None if debug else "run with --debug for the traceback",
            )


def _report(
    exc: BaseException,
    exit_code: int,
    *,
    debug: bool,
    prog: str,
    kind: str = "error",
    describe: bool = False,
    hint: str | None = None,
) -> int:
    """Print ``exc`` as one message on stderr (with its traceback under --debug)."""
    from processpype.communications._masking import redact

    if debug:  # a lower library's message in the traceback may quote a secret
        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    text = describe_error(exc) if describe else redact(str(exc))
    if hint:
        text += f" ({hint})"
    print(f"{prog}: {kind}: {text}", file=sys.stderr, flush=True)
    return exit_code


@contextlib.contextmanager
def _cli_logging(debug: bool, prog: str) -> Iterator[None]:
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
        status = _StatusLine.current
        if status is not None:
            status.clear()
        super().emit(record)


class _LowerLevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.levelname = record.levelname.lower()
        return super().format(record)


# -- config -------------------------------------------------------------------------------


def resolve_config(path: str | None) -> tuple[CommunicationsConfig, str]:
    """Load ``path`` (``-c``), else ``$PROCESSPYPE_CONFIG``, else the embedded default.

    Returns the config and a description of where it came from.
    """
    from processpype.config.loader import config_from_mapping, load_config, load_config_text

    if path is not None:
        if not path.strip():
            raise CLIError("argument -c/--config: the path is empty")
        if path == "-":
            return load_config_text(_read_stdin("the config"), source="<stdin>"), "<stdin>"
        return load_config(path), path
    env_path = os.environ.get(CONFIG_ENV_VAR, "").strip()
    if env_path:
        try:
            return load_config(env_path), f"{env_path} (from ${CONFIG_ENV_VAR})"
        except ConfigError as exc:
            raise ConfigError(f"{exc} (the file named by ${CONFIG_ENV_VAR})") from exc
    config = config_from_mapping(DEFAULT_CONFIG, source=DEFAULT_SOURCE)
    return config, DEFAULT_SOURCE


def _read_stdin(what: str) -> str:
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as exc:
        raise CLIError(f"{what} read from stdin is not valid UTF-8: {exc.reason}") from None


# -- send ---------------------------------------------------------------------------------


def _cmd_send(args: argparse.Namespace) -> int:
    from processpype.communications.models import OutgoingMessage

    attachments = _attachments(args)
    if args.message is None and attachments:
        args.message = ""  # files alone make a message
    if args.message is None:
        raise CLIError("send needs a MESSAGE argument, or - to read it from stdin")
    if args.message == "-":
        if args.config == "-":
            raise CLIError("stdin cannot hold both the config (-c -) and the message (-)")
        text = _read_stdin("the message").rstrip("\r\n")
    else:
        text = args.message
    if not text.strip() and not attachments:
        raise CLIError(
            "the message is empty" + (" (stdin had no text)" if args.message == "-" else "")
        )
    if not args.label.strip():
        raise CLIError("argument -l/--label: the label is empty")
    config, source = resolve_config(args.config)
    message = OutgoingMessage(
        message=text,
        label=args.label,
        severity=args.severity,
        subject=args.subject,
        source=args.source,
        metadata=_metadata(args.metadata),
        attachments=attachments,
    )
    return _run(lambda interrupt: _send(config, source, message, args, interrupt))


def _attachments(args: argparse.Namespace) -> list[Attachment]:
    """The files of ``--attach``, read now; CLIError naming a file that cannot be read."""
    from processpype.communications.models import Attachment

    if args.attach_name is not None and "-" not in args.attach:
        raise CLIError("argument --attach-name: it names the file read from stdin (--attach -)")
    if args.attach.count("-") > 1:
        raise CLIError("argument -a/--attach: stdin can be attached once")
    if "-" in args.attach and "-" in (args.message, args.config):
        what = "the message (-)" if args.message == "-" else "the config (-c -)"
        raise CLIError(f"stdin cannot hold both {what} and an attachment (--attach -)")
    files: list[Attachment] = []
    for item in args.attach:
        try:
            if item == "-":
                name = args.attach_name or _STDIN_ATTACHMENT
                files.append(Attachment.from_bytes(sys.stdin.buffer.read(), name))
            else:
                files.append(Attachment.from_path(item))
        except OSError as exc:
            raise CLIError(f"argument -a/--attach: {exc}") from None
        except ValueError:  # a pydantic ValidationError: the file name is not valid
            where = "--attach-name" if item == "-" else "-a/--attach"
            name = args.attach_name if item == "-" else os.path.basename(item)
            raise CLIError(
                f"argument {where}: {name!r} is not a valid file name (no control characters "
                "or folder separators)"
            ) from None
    return files


def _metadata(items: Sequence[tuple[str, str]]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for key, value in items:
        if key not in metadata:
            metadata[key] = value
        elif isinstance(metadata[key], list):
            metadata[key].append(value)
        else:
            metadata[key] = [metadata[key], value]
    return metadata


def _no_backend_error(config: CommunicationsConfig, source: str, label: str) -> CLIError:
    routes = config.labels()
    known = ", ".join(sorted(routes)) or "none"
    hint = ""
    if source == DEFAULT_SOURCE:
        hint = f"; no config was given: pass -c CONFIG or set ${CONFIG_ENV_VAR}"
    return CLIError(f"no backend handles label {label!r} in {source} (labels: {known}){hint}")


async def _send(
    config: CommunicationsConfig,
    source: str,
    message: OutgoingMessage,
    args: argparse.Namespace,
    interrupt: _Interrupt,
) -> int:
    """Deliver ``message`` to every backend of its label, printing each outcome."""
    from processpype.communications.dispatcher import CommunicationDispatcher

    names = [
        name
        for name, backend in config.backends.items()
        if backend.enabled and message.label in backend.labels
    ]
    if not names:
        raise _no_backend_error(config, source, message.label)
    if not config.enabled:
        logging.getLogger("processpype.cli").warning(
            "communications are disabled in %s (enabled: false): nothing is sent; "
            "set enabled: true to send",
            source,
        )
        for name in names:
            _print_outcome(name, "skipped", "communications are disabled (enabled: false)", args)
        return EXIT_OK

    dispatcher = CommunicationDispatcher()
    communicators, failed_early = _create_communicators(
        config, names, dispatcher, receive=False, source=source
    )
    for name, reason in failed_early.items():
        _print_outcome(name, "failed", reason, args)
    tasks: dict[asyncio.Task[DeliveryResult], str] = {
        asyncio.create_task(_deliver_one(dispatcher, c, message), name=c.name): c.name
        for c in communicators
    }
    status = _StatusLine(sys.stderr)
    started = time.monotonic()
    deadline = None if args.timeout is None else started + args.timeout
    any_failed = bool(failed_early)
    any_delivered = False
    try:
        pending = set(tasks)
        while pending:
            wait = _TICK
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            done, pending = await asyncio.wait(
                pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                result = task.result()
                any_failed |= result.status == "failed"
                any_delivered |= result.status in ("delivered", "queued")
                status.clear()
                _print_result(result, args)
            elapsed = time.monotonic() - started
            if pending and elapsed >= _STATUS_AFTER:
                waiting = ", ".join(sorted(tasks[t] for t in pending))
                status.show(f"waiting for {waiting} ({elapsed:.0f} s; Ctrl-C to stop)")
        status.clear()
        if pending:
            for task in pending:
                _print_outcome(
                    tasks[task],
                    "not delivered",
                    f"no outcome within {args.timeout:g} s (--timeout)",
                    args,
                )
            return EXIT_FAILED
        if not any_failed and not any_delivered:
            print(
                f"{args.prog}: nothing was delivered: every backend of label "
                f"{message.label!r} skipped the message (see the reasons above)",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_FAILED
        return EXIT_FAILED if any_failed else EXIT_OK
    except asyncio.CancelledError:
        status.clear()
        await _finish_after_interrupt(tasks, deadline, interrupt, args)
        unfinished = sorted(tasks[t] for t in tasks if not t.done())
        for name in unfinished:
            _print_outcome(
                name,
                "not delivered",
                f"interrupted ({interrupt.name}) while sending; it may have been delivered",
                args,
            )
        if unfinished:
            print(
                f"{args.prog}: interrupted: not delivered to {', '.join(unfinished)}",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(f"{args.prog}: interrupted", file=sys.stderr, flush=True)
        return interrupt.exit_code
    finally:
        await _cancel(tasks)
        await _stop(communicators)


async def _finish_after_interrupt(
    tasks: dict[asyncio.Task[DeliveryResult], str],
    deadline: float | None,
    interrupt: _Interrupt,
    args: argparse.Namespace,
) -> None:
    """First Ctrl-C or SIGTERM: let the sends under way finish (briefly), print outcomes.

    A second signal stops at once (what is left is reported by the caller).
    """
    pending = {task for task in tasks if not task.done()}
    grace = _INTERRUPT_GRACE
    if deadline is not None:
        grace = min(grace, max(0.0, deadline - time.monotonic()))
    if not pending or grace <= 0:
        return
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()  # the signal's cancellation is handled here
    names = ", ".join(sorted(tasks[task] for task in pending))
    print(
        f"{args.prog}: {interrupt.name}: waiting up to {grace:g} s for {names} "
        f"({interrupt.name} again to stop now)",
        file=sys.stderr,
        flush=True,
    )
    try:
        done, _ = await asyncio.wait(pending, timeout=grace)
    except asyncio.CancelledError:  # a second SIGTERM
        return
    for task in done:
        _print_result(task.result(), args)


async def _deliver_one(
    dispatcher: CommunicationDispatcher, communicator: Communicator, message: OutgoingMessage
) -> DeliveryResult:
    """Start ``communicator`` if the message is for it, then deliver; never raises."""
    from processpype.communications.delivery import DeliveryResult

    min_severity = getattr(communicator.config, "min_severity", MessageSeverity.DEBUG)
    if message.severity >= min_severity and not communicator.is_started:
        try:
            await communicator.start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return DeliveryResult.failed(
                communicator.name, f"did not start: {describe_error(exc)}", attempts=0
            )
    return await dispatcher.deliver_to(communicator, message)


def _print_result(result: DeliveryResult, args: argparse.Namespace) -> None:
    status: str = result.status
    if result.attempts > 1:
        status += f" after {result.attempts} attempts"
    detail = "; ".join([*([result.error] if result.error else []), *result.warnings])
    _print_outcome(result.backend, status, detail or None, args)


def _print_outcome(name: str, status: str, detail: str | None, args: argparse.Namespace) -> None:
    """One line per backend: ``name: status[: detail]`` on stdout."""
    if status == "delivered" and args.quiet:
        return
    print(f"{name}: {status}: {detail}" if detail else f"{name}: {status}", flush=True)


def _create_communicators(
    config: CommunicationsConfig,
    names: Sequence[str],
    dispatcher: CommunicationDispatcher,
    *,
    receive: bool = True,
    source: str | None = None,
) -> tuple[list[Communicator], dict[str, str]]:
    """Create and register the named backends; return them and the ones that failed.

    With an outbox in the config they are its stand-ins (messages go to Redis);
    ``receive=False`` keeps those from competing for a bot's update connection. A
    ``ConfigError`` of a backend is raised naming ``source``, the config's file.
    """
    from processpype.communications.backends import create_communicator

    factory: Callable[..., Communicator] = create_communicator
    if config.outbox is not None and config.enabled:
        from processpype.communications.outbox.producer import OutboxProducer

        factory = OutboxProducer(config.outbox, receive=receive).communicator_factory
    created: list[Communicator] = []
    failed: dict[str, str] = {}
    for name in names:
        backend = config.backends[name]
        try:
            communicator = factory(name, backend)
        except ConfigError as exc:
            if source is None:
                raise
            raise exc.with_source(source) from exc.__cause__
        except Exception as exc:
            failed[name] = f"cannot be created: {describe_error(exc)}"
            continue
        dispatcher.register(communicator, list(backend.labels))
        created.append(communicator)
    return created, failed


async def _cancel(tasks: dict[asyncio.Task[DeliveryResult], str]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _stop(communicators: Sequence[Communicator]) -> None:
    """Stop every backend, bounded by ``_STOP_TIMEOUT`` (a hung stop must not hang exit)."""

    async def stop_one(communicator: Communicator) -> None:
        try:
            await communicator.stop()
        except Exception as exc:
            logging.getLogger("processpype.cli").debug(
                "%s: stop failed: %s", communicator.name, describe_error(exc)
            )

    if not communicators:
        return
    try:
        await asyncio.wait_for(asyncio.gather(*(stop_one(c) for c in communicators)), _STOP_TIMEOUT)
    except TimeoutError:
        logging.getLogger("processpype.cli").warning(
            "some backends did not stop within %g s", _STOP_TIMEOUT
        )


class _StatusLine:
    """A one-line progress note on stderr, shown only when stderr is a terminal."""

    current: _StatusLine | None = None
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
        _StatusLine.current = self

    def clear(self) -> None:
        """Erase the status line, if one is shown."""
        if self._shown:
            self._shown = False
            _StatusLine.current = None
            self._stream.write("\r\x1b[K")
            self._stream.flush()


# -- running a coroutine, with Ctrl-C and SIGTERM -----------------------------------------


class _Interrupt:
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


def _run(make: Callable[[_Interrupt], Coroutine[Any, Any, int]]) -> int:
    """Run a command's coroutine on a fresh loop; Ctrl-C or SIGTERM cancels it cleanly.

    The first Ctrl-C cancels the coroutine, which reports what it had not finished and
    cleans up; a second Ctrl-C stops at once.
    """
    interrupt = _Interrupt()

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


# -- check --------------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    import yaml

    from processpype.communications.backends import backend_unavailable_reason

    path = args.config_file if args.config_file is not None else args.config
    config, source = resolve_config(path)
    config_source = source
    out = sys.stdout
    if source == DEFAULT_SOURCE:
        source += f" (no CONFIG argument, no -c, and ${CONFIG_ENV_VAR} is not set)"
    print(f"Config: {source}", file=out)
    if not config.enabled:
        print(
            "Warning: communications are disabled (enabled: false): nothing is sent until "
            "you set enabled: true",
            file=out,
        )
    print("\nResolved config (secrets masked):", file=out)
    dumped = yaml.safe_dump(
        masked_config(config), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    print(_indent(dumped.rstrip("\n")), file=out)

    rows: list[tuple[str, str, str, str]] = []
    problems = 0
    invalid: list[ConfigError] = []
    for name, backend in config.backends.items():
        labels = ", ".join(backend.labels)
        if not backend.enabled:
            rows.append((name, backend.type, labels, "disabled (enabled: false)"))
            continue
        reason = backend_unavailable_reason(backend.type)
        error = None if reason is not None else _construction_error(name, backend, config_source)
        if reason is not None:
            problems += 1
            rows.append((name, backend.type, labels, f"unavailable: {reason}"))
        elif error is not None:
            invalid.append(error)
            rows.append((name, backend.type, labels, f"invalid: {error.problem}"))
        else:
            rows.append((name, backend.type, labels, "available" + _check_note(backend)))
    print("\nBackends:", file=out)
    if rows:
        print(_table([("NAME", "TYPE", "LABELS", "STATUS"), *rows]), file=out)
    else:
        print("  (none: add backends under 'backends:')", file=out)

    print("\nLabels (label -> backends):", file=out)
    routes = config.labels()
    if routes:
        route_rows = [(label, "-> " + ", ".join(names)) for label, names in routes.items()]
        print(_table(route_rows), file=out)
    else:
        print("  (none: no enabled backend)", file=out)
    out.flush()

    for error in invalid:
        print(f"{args.prog}: config error: {error}", file=sys.stderr)
    if invalid:
        return EXIT_USAGE
    if problems:
        print(
            f"{args.prog}: {problems} enabled backend(s) cannot be created here (see STATUS)",
            file=sys.stderr,
        )
    code = EXIT_FAILED if problems else EXIT_OK
    if args.connect:
        connect_code = _run(lambda interrupt: _connect(config, args, interrupt))
        code = max(code, connect_code) if connect_code < EXIT_USAGE else connect_code
    return code


def _check_note(backend: CommunicatorBackendConfig) -> str:
    """A warning for a backend that is valid but may send nothing."""
    if backend.type == "email" and not getattr(backend, "default_recipients", True):
        return " (no default_recipients: a message without metadata['recipients'] is skipped)"
    return ""


def _construction_error(
    name: str, backend: CommunicatorBackendConfig, source: str
) -> ConfigError | None:
    """Build ``backend`` as ``send`` would (no network): its ConfigError, naming ``source``."""
    from processpype.communications.backends import create_communicator

    try:
        create_communicator(name, backend)
    except ConfigError as exc:
        return exc.with_source(source)
    return None


async def _connect(
    config: CommunicationsConfig, args: argparse.Namespace, interrupt: _Interrupt
) -> int:
    """Start every enabled backend, report whether it came up, then stop it."""
    from processpype.communications.base import NoOpCommunicator
    from processpype.communications.dispatcher import CommunicationDispatcher

    names = [name for name, backend in config.backends.items() if backend.enabled]
    print("\nConnect:", flush=True)
    if not names:
        print("  (no enabled backend)", flush=True)
        return EXIT_OK
    dispatcher = CommunicationDispatcher()
    communicators, failed_early = _create_communicators(config, names, dispatcher)
    timeout: float | None = args.timeout

    async def start_one(communicator: Communicator) -> tuple[str, str]:
        if isinstance(communicator, NoOpCommunicator):
            return "unavailable", communicator.reason
        began = time.monotonic()
        try:
            await asyncio.wait_for(communicator.start(), timeout)
        except TimeoutError:
            return "failed", f"no answer within {timeout:g} s (--timeout)"
        except Exception as exc:
            return "failed", describe_error(exc)
        return "ok", f"started in {time.monotonic() - began:.2f} s"

    outcomes: dict[str, tuple[str, str]] = {
        name: ("failed", reason) for name, reason in failed_early.items()
    }
    status = _StatusLine(sys.stderr)
    tasks = {asyncio.create_task(start_one(c)): c.name for c in communicators}
    began = time.monotonic()
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(
                pending, timeout=_TICK, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                outcomes[tasks[task]] = task.result()
            if pending and time.monotonic() - began >= _STATUS_AFTER:
                waiting = ", ".join(sorted(tasks[t] for t in pending))
                status.show(f"connecting to {waiting}... (Ctrl-C to stop)")
        status.clear()
    except asyncio.CancelledError:
        status.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        unfinished = sorted(tasks[t] for t in tasks if tasks[t] not in outcomes)
        print(
            f"{args.prog}: interrupted while connecting to {', '.join(unfinished) or 'backends'}",
            file=sys.stderr,
            flush=True,
        )
        await _stop(communicators)
        return interrupt.exit_code
    await _stop(communicators)
    rows = [(name, *outcomes[name]) for name in names if name in outcomes]
    print(_table(rows), flush=True)
    return EXIT_FAILED if any(state != "ok" for _, state, _ in rows) else EXIT_OK


def masked_config(config: CommunicationsConfig) -> dict[str, Any]:
    """``config`` as plain data with every secret masked (webhook URLs keep their host)."""
    from pydantic import SecretStr

    from processpype.communications._masking import mask_url, mask_value

    data: dict[str, Any] = config.model_dump(mode="json")
    for name, backend in config.backends.items():
        dumped = data["backends"][name]
        for field, info in type(backend).model_fields.items():
            value = getattr(backend, field)
            if isinstance(value, SecretStr) and "url" in field:
                dumped[field] = mask_url(value.get_secret_value())
            elif info.annotation is Any:  # free-form data, such as a webhook body
                dumped[field] = mask_value(dumped.get(field), field)
        for key in backend.model_extra or {}:
            dumped[key] = mask_value(dumped.get(key), key)
    if config.outbox is not None:  # host and database shown, the password masked
        data["outbox"]["url"] = config.outbox.display_url
    return data


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def _table(rows: Sequence[Sequence[str]], prefix: str = "  ") -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append(prefix + "  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


# -- listen -------------------------------------------------------------------------------


def _cmd_listen(args: argparse.Namespace) -> int:
    config, source = resolve_config(args.config)
    if not config.enabled:
        raise CLIError(
            f"communications are disabled in {source} (enabled: false): set enabled: true"
        )
    return _run(lambda interrupt: _listen(config, source, args, interrupt))


async def _listen(
    config: CommunicationsConfig, source: str, args: argparse.Namespace, interrupt: _Interrupt
) -> int:
    """Print every incoming message until interrupted, ``--count`` or ``--timeout``."""
    from processpype.communications.dispatcher import CommunicationDispatcher

    names = [name for name, backend in config.backends.items() if backend.enabled]
    dispatcher = CommunicationDispatcher()
    created, failed_early = _create_communicators(config, names, dispatcher, source=source)
    for name, reason in failed_early.items():
        print(f"{args.prog}: {name}: {reason}", file=sys.stderr)
    receivers = [c for c in created if c.supports_receiving]
    for communicator in created:
        if not communicator.supports_receiving:
            dispatcher.unregister(communicator.name)
    if not receivers:
        raise CLIError(
            f"no backend in {source} receives messages (enable one that does, e.g. a "
            "telegram backend with listen_to_commands: true)"
        )

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[IncomingMessage] = asyncio.Queue()

    def hand_over(message: IncomingMessage) -> None:
        # Backends may publish from any thread: hand the message to this loop.
        loop.call_soon_threadsafe(queue.put_nowait, message)

    unsubscribe = dispatcher.subscribe(hand_over)
    received = 0
    try:
        running = await _start_receivers(receivers, args.prog)
        if not running:
            return EXIT_FAILED
        print(
            f"{args.prog}: listening on {', '.join(c.name for c in running)} ({source}); "
            "Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        while args.count is None or received < args.count:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                message = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
            received += 1
            print(_format_incoming(message, as_json=args.json), flush=True)
        if args.count is not None and received < args.count:
            print(
                f"{args.prog}: got {received} of {args.count} messages within "
                f"{args.timeout:g} s (--timeout)",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_FAILED
        return EXIT_OK
    except asyncio.CancelledError:
        print(
            f"{args.prog}: stopped ({interrupt.name}) after {received} message(s)",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_OK
    finally:
        unsubscribe()
        await _stop(receivers)


_LISTEN_START_TIMEOUT = 60.0
"""Seconds `listen` waits for a receiving backend to connect."""


async def _start_receivers(receivers: Sequence[Communicator], prog: str) -> list[Communicator]:
    async def start_one(communicator: Communicator) -> bool:
        try:
            async with asyncio.timeout(_LISTEN_START_TIMEOUT):
                await communicator.start()
        except TimeoutError:
            print(
                f"{prog}: {communicator.name}: did not start within {_LISTEN_START_TIMEOUT:g} s",
                file=sys.stderr,
            )
            return False
        except Exception as exc:
            print(
                f"{prog}: {communicator.name}: did not start: {describe_error(exc)}",
                file=sys.stderr,
            )
            return False
        return True

    started = await asyncio.gather(*(start_one(c) for c in receivers))
    return [c for c, ok in zip(receivers, started, strict=True) if ok]


def _format_incoming(message: IncomingMessage, *, as_json: bool) -> str:
    if as_json:
        return message.model_dump_json()
    when = message.timestamp.isoformat(timespec="seconds") if message.timestamp else "-"
    sender = message.sender or message.sender_id or "unknown sender"
    if message.sender and message.sender_id:
        sender += f" ({message.sender_id})"
    return f"{when} [{message.chat_label}] {sender} via {message.backend_name}: {message.text}"


# -- smtpd --------------------------------------------------------------------------------


def _cmd_smtpd(args: argparse.Namespace) -> int:
    try:
        from processpype.testing.smtp import SMTPTestServer
    except ImportError as exc:
        raise CLIError(
            f"smtpd needs the testing extra ({exc.name or exc} is missing): "
            "pip install 'processpype[testing]'",
            exit_code=EXIT_FAILED,
        ) from exc

    server = SMTPTestServer(tls=args.tls, auth=args.auth, host=args.host, port=args.port)
    try:
        server.start()
    except OSError as exc:
        raise CLIError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc} "
            "(choose another --port, or --port 0 for a free one)",
            exit_code=EXIT_FAILED,
        ) from exc
    restore = _stop_on_sigterm()
    try:
        _print_smtpd_banner(server, args)
        shown = 0
        while True:
            try:
                server.wait_for_messages(shown + 1, timeout=3600.0)
            except TimeoutError:
                continue
            messages = server.messages
            envelopes = server.envelopes
            for index in range(shown, len(messages)):
                envelope = envelopes[index] if index < len(envelopes) else None
                print(_format_mail(index + 1, messages[index], envelope), flush=True)
            shown = len(messages)
    except (KeyboardInterrupt, _Terminated):
        print(f"{args.prog}: SMTP test server stopped", file=sys.stderr, flush=True)
        return EXIT_OK
    finally:
        restore()
        server.close()


class _Terminated(Exception):
    """SIGTERM arrived while a blocking command ran in the foreground."""


def _stop_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM raise ``_Terminated`` (like Ctrl-C); return a function that undoes it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def terminated(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminated)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def _print_smtpd_banner(server: Any, args: argparse.Namespace) -> None:
    mode = {"starttls": "STARTTLS", "implicit": "implicit TLS"}.get(args.tls or "", "plain")
    auth = f", AUTH as {args.auth[0]!r}" if args.auth else ""
    lines = [
        f"{args.prog}: SMTP test server listening on {server.host}:{server.port} "
        f"({mode}{auth}); Ctrl-C to stop",
        "Point an email backend at it (a whole config file, ready to paste):",
        "  enabled: true",
        "  backends:",
        "    local-mail:",
        "      type: email",
        f"      host: {server.host}",
        f"      port: {server.port}",
        f"      use_tls: {'true' if args.tls == 'implicit' else 'false'}",
        f"      start_tls: {'true' if args.tls == 'starttls' else 'false'}",
    ]
    if args.tls:
        lines.append(f"      cert_bundle: {server.ca_cert_path}")
    if args.auth:
        lines.append(f"      username: {args.auth[0]}")
        lines.append("      password: ${SMTP_PASSWORD}  # the password given to --auth")
    lines += [
        "      from_address: alerts@example.com",
        "      default_recipients: [you@example.com]",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _format_mail(number: int, mail: Message, envelope: SMTPEnvelope | None) -> str:
    recipients = envelope.rcpt_tos if envelope is not None else ()
    to = mail.get("To", "")
    lines = [
        f"--- mail {number} " + "-" * 40,
        f"From: {mail.get('From', '')}",
        f"To: {to}",
    ]
    if recipients and ", ".join(recipients) != to:
        lines.append(f"Envelope recipients: {', '.join(recipients)}")
    lines += [f"Subject: {mail.get('Subject', '')}", "", _mail_body(mail)]
    return "\n".join(lines)


def _mail_body(mail: Message) -> str:
    get_body = getattr(mail, "get_body", None)
    part: Message | None = get_body(preferencelist=("plain", "html")) if get_body else None
    target = part if part is not None else mail
    get_content = getattr(target, "get_content", None)
    if get_content is not None:
        with contextlib.suppress(KeyError, LookupError, TypeError):
            return str(get_content()).rstrip("\n")
    payload = target.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(target.get_content_charset() or "utf-8", "replace").rstrip("\n")
    return str(target.get_payload()).rstrip("\n")


# -- helpers ------------------------------------------------------------------------------
