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

The package holds one private module per command (``_send``, ``_check``, ``_listen``,
``_smtpd``, ``_run``, ``_worker``, ``_outbox``), ``_config`` (where the config comes
from, the backends on a dispatcher) and ``_terminal`` (the kit they share: exit codes,
argument types, status line, tables, logging, Ctrl-C and SIGTERM). Only the names in
``__all__`` here are the CLI's API. Building the parser imports
no backend and no pydantic, so ``--help`` is fast.

Exit codes: 0 success; 1 a backend failed or could not connect; 2 a usage or config
error; 130 interrupted by Ctrl-C (143 by SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from processpype.cli import _check, _listen, _outbox, _run, _send, _smtpd, _worker
from processpype.cli._check import masked_config
from processpype.cli._config import CONFIG_ENV_VAR, DEFAULT_CONFIG, resolve_config
from processpype.cli._terminal import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CLIError,
    Parser,
    cli_logging,
)
from processpype.foundation.errors import ConfigError, describe_error

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
    "masked_config",
    "resolve_config",
]


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The argument parser of ``processpype-notify`` (``prog`` is the name shown in help)."""
    from processpype import __version__

    debug = Parser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show library logs and a traceback with every error",
    )
    config = Parser(add_help=False)
    config.add_argument(
        "-c",
        "--config",
        metavar="CONFIG",
        help=f"YAML config file ('-' reads stdin); default ${CONFIG_ENV_VAR}, "
        "else a console backend on label 'default'",
    )

    parser = Parser(
        prog=prog,
        description="Send notifications through processpype backends, check a config, "
        "listen for incoming messages, or run a local SMTP server to try email settings.",
        epilog="Exit codes: 0 ok, 1 a backend failed, 2 usage or config error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show library logs and tracebacks with errors"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    # In the order --help lists them.
    _send.add_parser(commands, parents=[debug, config])
    _check.add_parser(commands, parents=[debug, config])
    _listen.add_parser(commands, parents=[debug, config])
    _smtpd.add_parser(commands, parents=[debug])
    _run.add_parser(commands, parents=[debug, config])
    _worker.add_parser(commands, parents=[debug, config])
    _outbox.add_parser(commands, parents=[debug, config])
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
    with cli_logging(debug, name):
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
    from processpype.foundation._masking import redact

    if debug:  # a lower library's message in the traceback may quote a secret
        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    text = describe_error(exc) if describe else redact(str(exc))
    if hint:
        text += f" ({hint})"
    print(f"{prog}: {kind}: {text}", file=sys.stderr, flush=True)
    return exit_code
