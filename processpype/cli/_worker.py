"""``processpype-notify worker``: deliver what the Redis outbox holds (private to the CLI).

The delivering is ``processpype.communications.outbox.worker.OutboxWorker``; this
module starts it, reports what it did, and stops it on Ctrl-C or SIGTERM (what is in
flight finishes; what is not acknowledged stays pending for other workers).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from processpype.cli._outbox import outbox_config
from processpype.cli._terminal import EXIT_OK, CLIError, Interrupt, add_command, run, whole_number

if TYPE_CHECKING:
    from processpype.config.models import CommunicationsConfig
    from processpype.config.outbox import OutboxConfig


_HELP = "deliver messages from the Redis outbox with the config's backends"
_DESCRIPTION = (
    "Read the outbox named in CONFIG (communications.outbox) and deliver "
    "every entry with the config's backends, at least once, until SIGTERM or Ctrl-C. "
    "Run as many workers as you like, on as many hosts."
)


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add ``worker`` to the ``processpype-notify`` sub-command parsers."""
    worker = add_command(commands, "worker", command, parents, _HELP, description=_DESCRIPTION)
    worker.add_argument(
        "--concurrency",
        type=whole_number(1),
        default=1,
        metavar="N",
        help="entries delivered at once by this worker (default 1)",
    )


def command(args: argparse.Namespace) -> int:
    """Run ``worker`` until Ctrl-C or SIGTERM."""
    config, outbox, source = outbox_config(args)
    if not config.enabled:
        raise CLIError(
            f"communications are disabled in {source} (enabled: false): set enabled: true"
        )
    return run(lambda interrupt: _worker(config, outbox, args, interrupt))


async def _worker(
    config: CommunicationsConfig,
    outbox: OutboxConfig,
    args: argparse.Namespace,
    interrupt: Interrupt,
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
