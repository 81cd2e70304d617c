"""``processpype-notify outbox status|retry-dead``: look into the Redis outbox, repair it.

Private to the CLI. ``outbox_config`` (the config's outbox, or a ``CLIError`` saying
what is missing) is shared with the ``worker`` command. The work itself is done by
``processpype.communications.outbox.admin``. Both need ``communications.outbox`` in
the config and the ``redis`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from processpype.cli._config import resolve_config
from processpype.cli._terminal import EXIT_FAILED, EXIT_OK, CLIError, add_command
from processpype.foundation.errors import OutboxUnavailableError

if TYPE_CHECKING:
    from processpype.config.models import CommunicationsConfig
    from processpype.config.outbox import OutboxConfig


_HELP = "show or repair the Redis outbox (status, retry-dead)"
_DESCRIPTION = "Look into the outbox of CONFIG, or put its dead letters back."
_STATUS_HELP = "length, pending entries per worker, oldest entry's age, dead letters"
_RETRY_HELP = "put the dead letters back in the outbox for the workers to try again"


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add ``outbox`` and its actions to the ``processpype-notify`` sub-command parsers."""
    outbox = add_command(commands, "outbox", _usage, (), _HELP, description=_DESCRIPTION)
    actions = outbox.add_subparsers(
        dest="outbox_command", metavar="ACTION", parser_class=type(outbox)
    )

    status = add_command(actions, "status", _status, parents, _STATUS_HELP)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    retry = add_command(actions, "retry-dead", _retry_dead, parents, _RETRY_HELP)
    retry.add_argument("--backend", metavar="NAME", help="only the dead letters of this backend")


def outbox_config(args: argparse.Namespace) -> tuple[CommunicationsConfig, OutboxConfig, str]:
    """The config of ``-c``, its outbox and where it came from; CLIError when unusable."""
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


def _usage(args: argparse.Namespace) -> int:
    raise CLIError(f"choose an action: {args.prog} outbox status, or outbox retry-dead")


def _status(args: argparse.Namespace) -> int:
    _, outbox, _source = outbox_config(args)
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


def _retry_dead(args: argparse.Namespace) -> int:
    _, outbox, _source = outbox_config(args)
    from processpype.communications.outbox.admin import retry_dead_letters

    try:
        moved = asyncio.run(retry_dead_letters(outbox, backend=args.backend))
    except OutboxUnavailableError as exc:
        raise CLIError(str(exc), exit_code=EXIT_FAILED) from None
    which = f" of {args.backend}" if args.backend else ""
    print(f"{args.prog}: put {moved} dead letter(s){which} back in outbox {outbox.name!r}")
    return EXIT_OK
