"""``processpype-notify send``: send one message and print each backend's outcome.

Private to the CLI. The message travels the path every message takes: the backends of
its label are registered on a ``CommunicationDispatcher`` (``register_backends``),
started by it, and ``deliver`` fans the message out; each backend's result is printed as
it arrives, and the backends are stopped with its bounded ``stop_all``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from processpype.cli._config import (
    CONFIG_ENV_VAR,
    DEFAULT_SOURCE,
    read_stdin,
    register,
    resolve_config,
    stop,
)
from processpype.cli._terminal import (
    EXIT_FAILED,
    EXIT_OK,
    STATUS_AFTER,
    TICK,
    CLIError,
    Interrupt,
    StatusLine,
    add_command,
    add_timeout,
    logger,
    metadata_item,
    run,
    severity,
)
from processpype.foundation.errors import describe_error

if TYPE_CHECKING:
    from processpype.communications.delivery import DeliveryResult
    from processpype.communications.dispatcher import CommunicationDispatcher
    from processpype.config.models import CommunicationsConfig
    from processpype.foundation.models import Attachment, OutgoingMessage

_STDIN_ATTACHMENT = "stdin.bin"
_INTERRUPT_GRACE = 5.0  # after Ctrl-C or SIGTERM, how long sends under way may finish


_HELP = "send a message and print each backend's outcome"
_DESCRIPTION = (
    "Send MESSAGE to every backend of LABEL and print one line per backend "
    "with its outcome. Exit 0 when none failed, 1 when any failed."
)


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add ``send`` to the ``processpype-notify`` sub-command parsers."""
    send = add_command(commands, "send", command, parents, _HELP, description=_DESCRIPTION)
    send.add_argument("message", nargs="?", metavar="MESSAGE", help="the text; '-' reads stdin")
    send.add_argument("-l", "--label", default="default", help="routing label (default: default)")
    send.add_argument(
        "-s",
        "--severity",
        type=severity,
        default="info",  # argparse converts it with ``type`` (pydantic loads only for send)
        help="debug, info, warning, error or critical, any case (default: info)",
    )
    send.add_argument("--subject", help="subject line (email)")
    send.add_argument("--source", help="what produced the message, e.g. the job's name")
    send.add_argument(
        "-m",
        "--metadata",
        type=metadata_item,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata for the backends (repeat it; a repeated KEY gives a list), "
        "e.g. -m recipients=ops@example.com",
    )
    add_timeout(
        send,
        30.0,
        "give up on backends without an outcome after this long (0: no limit; default 30)",
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


def command(args: argparse.Namespace) -> int:
    """Run ``send``: build the message from the arguments, deliver it, print outcomes."""
    from processpype.foundation.models import OutgoingMessage

    attachments = _attachments(args)
    if args.message is None and attachments:
        args.message = ""  # files alone make a message
    if args.message is None:
        raise CLIError("send needs a MESSAGE argument, or - to read it from stdin")
    if args.message == "-":
        if args.config == "-":
            raise CLIError("stdin cannot hold both the config (-c -) and the message (-)")
        text = read_stdin("the message").rstrip("\r\n")
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
    return run(lambda interrupt: _send(config, source, message, args, interrupt))


def _attachments(args: argparse.Namespace) -> list[Attachment]:
    """The files of ``--attach``, read now; CLIError naming a file that cannot be read."""
    from processpype.foundation.models import Attachment

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


class _Outcomes:
    """Prints each backend's result as the dispatcher reports it, and remembers it."""

    def __init__(
        self, dispatcher: CommunicationDispatcher, args: argparse.Namespace, status: StatusLine
    ) -> None:
        self._dispatcher = dispatcher
        self._args = args
        self._status = status
        self.results: dict[str, DeliveryResult] = {}

    def __call__(self, result: DeliveryResult) -> None:
        """``on_result`` of ``deliver``: print the result's line at once."""
        self.results[result.backend] = result
        self._status.clear()
        error = self._dispatcher.start_errors().get(result.backend)
        if result.status == "failed" and error is not None:
            _print_outcome(
                result.backend, "failed", f"did not start: {describe_error(error)}", self._args
            )
        else:
            _print_result(result, self._args)

    @property
    def any_failed(self) -> bool:
        """Whether a backend failed."""
        return any(result.status == "failed" for result in self.results.values())

    @property
    def any_delivered(self) -> bool:
        """Whether a backend delivered (or queued) the message."""
        return any(result.status in ("delivered", "queued") for result in self.results.values())


async def _send(
    config: CommunicationsConfig,
    source: str,
    message: OutgoingMessage,
    args: argparse.Namespace,
    interrupt: Interrupt,
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
        logger.warning(
            "communications are disabled in %s (enabled: false): nothing is sent; "
            "set enabled: true to send",
            source,
        )
        for name in names:
            _print_outcome(name, "skipped", "communications are disabled (enabled: false)", args)
        return EXIT_OK

    dispatcher = CommunicationDispatcher()
    # Only the backends of the label: the others are not built, nor connected.
    of_label = config.model_copy(
        update={"backends": {name: config.backends[name] for name in names}}
    )
    failed_early = register(of_label, dispatcher, receive=False, source=source)
    for name, reason in failed_early.items():
        _print_outcome(name, "failed", reason, args)
    expected = [name for name in names if name not in failed_early]
    status = StatusLine(sys.stderr)
    outcomes = _Outcomes(dispatcher, args, status)

    async def start_and_deliver() -> None:
        # Every start begins now; the message waits at each backend's start gate and is
        # sent to a backend as soon as that backend is up, not when the slowest is.
        starts = [c for c in dispatcher.communicators.values() if not c.is_started]
        starting = [dispatcher.begin_start(c) for c in starts]
        try:
            await dispatcher.deliver(message, on_result=outcomes)
        finally:
            for task in starting:
                task.cancel()

    delivering = asyncio.ensure_future(start_and_deliver())
    started = time.monotonic()
    deadline = None if args.timeout is None else started + args.timeout

    def waiting() -> list[str]:
        return [name for name in expected if name not in outcomes.results]

    try:
        while not delivering.done():
            wait = TICK
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            await asyncio.wait({delivering}, timeout=wait)
            elapsed = time.monotonic() - started
            if not delivering.done() and elapsed >= STATUS_AFTER:
                names_waited = ", ".join(sorted(waiting()))
                status.show(f"waiting for {names_waited} ({elapsed:.0f} s; Ctrl-C to stop)")
        status.clear()
        if not delivering.done():  # --timeout ran out
            for name in sorted(waiting()):
                _print_outcome(
                    name, "not delivered", f"no outcome within {args.timeout:g} s (--timeout)", args
                )
            return EXIT_FAILED
        delivering.result()  # raises what went wrong (a closed stdout): main reports it
        any_failed = bool(failed_early) or outcomes.any_failed
        if not any_failed and not outcomes.any_delivered:
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
        await _finish_after_interrupt(delivering, waiting(), deadline, interrupt, args)
        await _cancel(delivering)
        unfinished = sorted(waiting())
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
        await _cancel(delivering)
        await stop(dispatcher)


async def _finish_after_interrupt(
    delivering: asyncio.Future[None],
    pending: Sequence[str],
    deadline: float | None,
    interrupt: Interrupt,
    args: argparse.Namespace,
) -> None:
    """First Ctrl-C or SIGTERM: let the sends under way finish (briefly); they print.

    A second signal stops at once (what is left is reported by the caller).
    """
    grace = _INTERRUPT_GRACE
    if deadline is not None:
        grace = min(grace, max(0.0, deadline - time.monotonic()))
    if not pending or delivering.done() or grace <= 0:
        return
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()  # the signal's cancellation is handled here
    names = ", ".join(sorted(pending))
    print(
        f"{args.prog}: {interrupt.name}: waiting up to {grace:g} s for {names} "
        f"({interrupt.name} again to stop now)",
        file=sys.stderr,
        flush=True,
    )
    try:
        await asyncio.wait({delivering}, timeout=grace)
    except asyncio.CancelledError:  # a second SIGTERM
        return


async def _cancel(delivering: asyncio.Future[None]) -> None:
    """Cancel the delivery still under way and wait until it has unwound."""
    delivering.cancel()
    await asyncio.gather(delivering, return_exceptions=True)


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
