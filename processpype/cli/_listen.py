"""``processpype-notify listen``: print incoming messages until interrupted.

Private to the CLI. The receiving backends are registered on a
``CommunicationDispatcher``, started by it (``start_all``, bounded), and what they
receive reaches this command through ``dispatcher.subscribe``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from processpype.cli._config import register, resolve_config, stop
from processpype.cli._terminal import (
    EXIT_FAILED,
    EXIT_OK,
    CLIError,
    Interrupt,
    add_command,
    add_timeout,
    run,
    whole_number,
)
from processpype.foundation.errors import describe_error

if TYPE_CHECKING:
    from processpype.communications.base import Communicator
    from processpype.communications.dispatcher import CommunicationDispatcher
    from processpype.config.models import CommunicationsConfig
    from processpype.foundation.models import IncomingMessage

START_TIMEOUT = 60.0
"""Seconds `listen` waits for the receiving backends to connect."""


_HELP = "print incoming messages until interrupted"
_DESCRIPTION = (
    "Start the backends that receive messages (e.g. Telegram with "
    "listen_to_commands: true) and print every incoming message until Ctrl-C."
)


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add ``listen`` to the ``processpype-notify`` sub-command parsers."""
    listen = add_command(commands, "listen", command, parents, _HELP, description=_DESCRIPTION)
    listen.add_argument("--count", type=whole_number(1), metavar="N", help="exit after N messages")
    add_timeout(listen, None, "stop after this long (exit 1 if --count messages did not arrive)")
    listen.add_argument("--json", action="store_true", help="print one JSON object per message")


def command(args: argparse.Namespace) -> int:
    """Run ``listen``."""
    config, source = resolve_config(args.config)
    if not config.enabled:
        raise CLIError(
            f"communications are disabled in {source} (enabled: false): set enabled: true"
        )
    return run(lambda interrupt: _listen(config, source, args, interrupt))


async def _listen(
    config: CommunicationsConfig, source: str, args: argparse.Namespace, interrupt: Interrupt
) -> int:
    """Print every incoming message until interrupted, ``--count`` or ``--timeout``."""
    from processpype.communications.dispatcher import CommunicationDispatcher

    dispatcher = CommunicationDispatcher()
    failed_early = register(config, dispatcher, source=source)
    for name, reason in failed_early.items():
        print(f"{args.prog}: {name}: {reason}", file=sys.stderr)
    receivers = [c for c in dispatcher.communicators.values() if c.supports_receiving]
    for name, communicator in dispatcher.communicators.items():
        if not communicator.supports_receiving:
            dispatcher.unregister(name)
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
        running = await _start_receivers(dispatcher, receivers, args.prog)
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
        await stop(dispatcher)


async def _start_receivers(
    dispatcher: CommunicationDispatcher, receivers: Sequence[Communicator], prog: str
) -> list[Communicator]:
    """Start ``receivers`` (up to ``START_TIMEOUT``); print why some did not start."""
    try:
        async with asyncio.timeout(START_TIMEOUT):
            await dispatcher.start_all()
    except TimeoutError:
        pass  # those still starting are named below
    errors = dispatcher.start_errors()
    for communicator in receivers:
        error = errors.get(communicator.name)
        if error is not None:
            print(
                f"{prog}: {communicator.name}: did not start: {describe_error(error)}",
                file=sys.stderr,
            )
        elif not communicator.is_started:
            print(
                f"{prog}: {communicator.name}: did not start within {START_TIMEOUT:g} s",
                file=sys.stderr,
            )
    return [c for c in receivers if c.is_started and c.name not in errors]


def _format_incoming(message: IncomingMessage, *, as_json: bool) -> str:
    if as_json:
        return message.model_dump_json()
    when = message.timestamp.isoformat(timespec="seconds") if message.timestamp else "-"
    sender = message.sender or message.sender_id or "unknown sender"
    if message.sender and message.sender_id:
        sender += f" ({message.sender_id})"
    return f"{when} [{message.chat_label}] {sender} via {message.backend_name}: {message.text}"
