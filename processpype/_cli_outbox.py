"""``processpype-notify`` commands of the Redis outbox: ``worker`` and ``outbox``.

Commands::

    processpype-notify worker [-c CONFIG] [--concurrency N]
    processpype-notify outbox status [-c CONFIG] [--json]
    processpype-notify outbox retry-dead [-c CONFIG] [--backend NAME]

They need ``communications.outbox`` in the config and the ``redis`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from typing import TYPE_CHECKING, Any

from processpype.cli import (
    EXIT_FAILED,
    EXIT_OK,
    CLIError,
    _count,
    _Interrupt,
    _run,
    resolve_config,
)
from processpype.communications.errors import OutboxUnavailableError

if TYPE_CHECKING:
    from processpype.config.models import CommunicationsConfig
    from processpype.config.outbox import OutboxConfig

__all__ = ["add_outbox_commands"]


def add_outbox_commands(
    commands: Any, *, debug: argparse.ArgumentParser, config: argparse.ArgumentParser
) -> None:
    """Add ``worker`` and ``outbox`` to the ``processpype-notify`` sub-command parsers."""
    worker = commands.add_parser(
        "worker",
        parents=[debug, config],
        help="deliver messages from the Redis outbox with the config's backends",
        description="Read the outbox named in CONFIG (communications.outbox) and deliver "
        "every entry with the config's backends, at least once, until SIGTERM or Ctrl-C. "
        "Run as many workers as you like, on as many hosts.",
    )
    worker.add_argument(
        "--concurrency",
        type=_count,
        default=1,
        metavar="N",
        help="entries delivered at once by this worker (default 1)",
    )
    worker.set_defaults(handler=_cmd_worker)

    outbox = commands.add_parser(
        "outbox",
        help="show or repair the Redis outbox (status, retry-dead)",
        description="Look into the outbox of CONFIG, or put its dead letters back.",
    )
    actions = outbox.add_subparsers(
        dest="outbox_command", metavar="ACTION", parser_class=type(outbox)
    )
    status = actions.add_parser(
        "status",
        parents=[debug, config],
        help="length, pending entries per worker, oldest entry's age, dead letters",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_cmd_status)
    retry = actions.add_parser(
        "retry-dead",
        parents=[debug, config],
        help="put the dead letters back in the outbox for the workers to try again",
    )
    retry.add_argument("--backend", metavar="NAME", help="only the dead letters of this backend")
    retry.set_defaults(handler=_cmd_retry_dead)
    outbox.set_defaults(handler=_cmd_outbox_usage)


def _outbox_config(args: argparse.Namespace) -> tuple[CommunicationsConfig, OutboxConfig, str]:
    config, source = resolve_config(args.config)
    if config.outbox is None:
        raise CLIError(
            f"{source} has no communications.outbox section (add outbox: {{url: "
            "redis://localhost:6379/0}})"
        )
    if importlib.util.find_spec("redis") is None:
        raise CLIError(
            "the outbox needs the 'redis' package, which is not installed: "
            "pip install 'processpype[redis]'"
        )
    return config, config.outbox, source


def _cmd_outbox_usage(args: argparse.Namespace) -> int:
    raise CLIError(f"choose an action: {args.prog} outbox status, or outbox retry-dead")


def _cmd_worker(args: argparse.Namespace) -> int:
    config, outbox, source = _outbox_config(args)
    if not config.enabled:
        raise CLIError(
            f"communications are disabled in {source} (enabled: false): set enabled: true"
        )
    return _run(lambda interrupt: _worker(config, outbox, args, interrupt))


async def _worker(
    config: CommunicationsConfig,
    outbox: OutboxConfig,
    args: argparse.Namespace,
    interrupt: _Interrupt,
) -> int:
    from processpype.communications.outbox.worker import OutboxWorker

    worker = OutboxWorker(config, concurrency=args.concurrency)
    names = [name for name, backend in config.backends.items() if backend.enabled]
    print(
        f"{args.prog}: worker {worker.consumer} delivering from {outbox.display_url} "
        f"(outbox {outbox.name!r}; backends: {', '.join(names) or 'none'}; "
        f"concurrency {args.concurrency}); Ctrl-C or SIGTERM to stop",
        file=sys.stderr,
        flush=True,
    )
    task = asyncio.ensure_future(worker.run())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # Finish what is in flight; what is not acknowledged stays pending for others.
        worker.stop()
        await task
        print(
            f"{args.prog}: worker stopped ({interrupt.name}); delivered {worker.delivered}, "
            f"dead-lettered {worker.dead_lettered}",
            file=sys.stderr,
            flush=True,
        )
        return interrupt.exit_code
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    _, outbox, _source = _outbox_config(args)
    from processpype.communications.outbox.admin import outbox_status

    try:
        status = asyncio.run(outbox_status(outbox))
    except OutboxUnavailableError as exc:
        raise CLIError(str(exc), exit_code=EXIT_FAILED) from None
    if args.json:
        print(json.dumps(status.as_dict(), indent=2))
        return EXIT_OK
    age = "none" if status.oldest_age is None else f"{status.oldest_age:.1f}s"
    unread = "?" if status.unread is None else str(status.unread)
    lines = [
        f"outbox {status.name!r} at {status.url}",
        f"  length:       {status.length} entries ({unread} not read yet)",
        f"  pending:      {status.pending_total}"
        + "".join(f"\n    {name}: {count}" for name, count in sorted(status.pending.items())),
        f"  oldest entry: {age} old",
    ]
    for backend, holder in sorted(status.leases.items()):
        lines.append(f"  updates of {backend}: held by {holder}")
    lines.append(f"  dead letters: {status.dead}")
    for letter in status.dead_letters:
        lines.append(
            f"    {letter.id} {letter.backend} after {letter.deliveries} deliveries: "
            f"{letter.error} ({letter.preview!r})"
        )
    print("\n".join(lines))
    return EXIT_OK


def _cmd_retry_dead(args: argparse.Namespace) -> int:
    _, outbox, _source = _outbox_config(args)
    from processpype.communications.outbox.admin import retry_dead_letters

    try:
        moved = asyncio.run(retry_dead_letters(outbox, backend=args.backend))
    except OutboxUnavailableError as exc:
        raise CLIError(str(exc), exit_code=EXIT_FAILED) from None
    which = f" of {args.backend}" if args.backend else ""
    print(f"{args.prog}: put {moved} dead letter(s){which} back in outbox {outbox.name!r}")
    return EXIT_OK
