"""``processpype-notify check``: validate a config, show it masked, and its label routes.

Private to the CLI (``masked_config`` is re-exported by ``processpype.cli``). With
``--connect`` the backends are registered on a ``CommunicationDispatcher`` and each is
started by it (``start_one``), then all are stopped with the bounded ``stop_all``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from processpype.cli._config import (
    CONFIG_ENV_VAR,
    DEFAULT_SOURCE,
    register,
    resolve_config,
    stop,
)
from processpype.cli._terminal import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    STATUS_AFTER,
    TICK,
    Interrupt,
    StatusLine,
    add_command,
    add_timeout,
    indent,
    run,
    table,
)
from processpype.foundation.errors import ConfigError, describe_error

if TYPE_CHECKING:
    from processpype.communications.base import Communicator
    from processpype.communications.dispatcher import CommunicationDispatcher
    from processpype.config.models import CommunicationsConfig, CommunicatorBackendConfig


_HELP = "validate a config, show it with secrets masked and its label routes"
_DESCRIPTION = (
    "Validate CONFIG, print it with every secret masked, and list which "
    "label reaches which backend. --connect also starts each backend."
)


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add ``check`` to the ``processpype-notify`` sub-command parsers."""
    check = add_command(commands, "check", command, parents, _HELP, description=_DESCRIPTION)
    check.add_argument("config_file", nargs="?", metavar="CONFIG", help="the YAML config file")
    check.add_argument(
        "--connect", action="store_true", help="start each backend and report whether it works"
    )
    add_timeout(check, 15.0, "how long each backend may take to start with --connect (default 15)")


def command(args: argparse.Namespace) -> int:
    """Run ``check``: print the config, its backends and routes; ``--connect`` starts them."""
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
    print(indent(dumped.rstrip("\n")), file=out)

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
        print(table([("NAME", "TYPE", "LABELS", "STATUS"), *rows]), file=out)
    else:
        print("  (none: add backends under 'backends:')", file=out)

    print("\nLabels (label -> backends):", file=out)
    routes = config.labels()
    if routes:
        route_rows = [(label, "-> " + ", ".join(names)) for label, names in routes.items()]
        print(table(route_rows), file=out)
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
        connect_code = run(lambda interrupt: _connect(config, args, interrupt))
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
    config: CommunicationsConfig, args: argparse.Namespace, interrupt: Interrupt
) -> int:
    """Start every enabled backend, report whether it came up, then stop it."""
    from processpype.communications.dispatcher import CommunicationDispatcher

    names = [name for name, backend in config.backends.items() if backend.enabled]
    print("\nConnect:", flush=True)
    if not names:
        print("  (no enabled backend)", flush=True)
        return EXIT_OK
    dispatcher = CommunicationDispatcher()
    failed_early = register(config, dispatcher)
    outcomes: dict[str, tuple[str, str]] = {
        name: ("failed", reason) for name, reason in failed_early.items()
    }
    status = StatusLine(sys.stderr)
    tasks = {
        asyncio.ensure_future(_start(dispatcher, c, args.timeout)): name
        for name, c in dispatcher.communicators.items()
    }
    began = time.monotonic()
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(
                pending, timeout=TICK, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                outcomes[tasks[task]] = task.result()
            if pending and time.monotonic() - began >= STATUS_AFTER:
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
        await stop(dispatcher)
        return interrupt.exit_code
    await stop(dispatcher)
    rows = [(name, *outcomes[name]) for name in names if name in outcomes]
    print(table(rows), flush=True)
    return EXIT_FAILED if any(state != "ok" for _, state, _ in rows) else EXIT_OK


async def _start(
    dispatcher: CommunicationDispatcher, communicator: Communicator, timeout: float | None
) -> tuple[str, str]:
    """Start ``communicator`` through ``dispatcher``: its state and a note for the table."""
    from processpype.communications.base import NoOpCommunicator

    if isinstance(communicator, NoOpCommunicator):
        return "unavailable", communicator.reason
    began = time.monotonic()
    try:
        started = await asyncio.wait_for(dispatcher.start_one(communicator), timeout)
    except TimeoutError:
        return "failed", f"no answer within {timeout:g} s (--timeout)"
    if not started:
        return "failed", describe_error(dispatcher.start_errors()[communicator.name])
    return "ok", f"started in {time.monotonic() - began:.2f} s"


def masked_config(config: CommunicationsConfig) -> dict[str, Any]:
    """``config`` as plain data with every secret masked (webhook URLs keep their host)."""
    from pydantic import SecretStr

    from processpype.foundation._masking import mask_url, mask_value

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
