"""The package imports light: no optional backend package at import time; tidy exports."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

OPTIONAL = ("telethon", "aiosmtplib", "httpx", "aiosmtpd", "respx", "trustme", "redis")


@pytest.mark.parametrize(
    "statement",
    [
        "import processpype",
        "import processpype.communications",
        "from processpype import Notifier, OutgoingMessage, MessageSeverity",
        "from processpype.communications.dispatcher import get_dispatcher",
        "from processpype.communications.backends import create_communicator",
        "import processpype.testing",
        "import processpype.testing.plugin",
        "import processpype.communications.outbox",
        "from processpype.config.models import OutboxConfig",
    ],
)
def test_import_loads_no_optional_backend_package(statement: str) -> None:
    code = (
        f"{statement}\n"
        "import sys\n"
        f"loaded = sorted(m for m in {OPTIONAL!r} if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(
    "module",
    [
        "processpype",
        "processpype.communications",
        "processpype.communications.outbox",
        "processpype.testing",
    ],
)
def test_public_names_are_sorted_and_resolve(module: str) -> None:
    package = importlib.import_module(module)
    names = list(package.__all__)
    assert names == sorted(names)
    for name in names:
        assert getattr(package, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    import processpype

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = processpype.Nope  # type: ignore[attr-defined]


def test_package_ships_type_information() -> None:
    from importlib.resources import files

    assert files("processpype").joinpath("py.typed").is_file()
