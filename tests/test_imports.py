"""The package imports light: no optional backend package at import time; tidy exports."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

OPTIONAL = ("telethon", "aiosmtplib", "httpx", "aiosmtpd", "respx", "trustme", "redis")


def run_python(
    code: str, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter, its output captured."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=cwd,
    )


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
    result = run_python(code)
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


_CLI_LOADED = (
    "import contextlib, io, sys\n"
    "from processpype.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    code = main({argv!r})\n"
    "heavy = {heavy!r}\n"
    "print(code, ','.join(sorted(m for m in heavy if m in sys.modules)))\n"
)


@pytest.mark.parametrize("argv", [["--help"], ["send", "--help"], ["check", "--help"]])
def test_cli_help_loads_no_pydantic_yaml_or_backend_package(argv: list[str]) -> None:
    heavy = (*OPTIONAL, "pydantic", "yaml", "eventspype", "processpype.testing")
    code = _CLI_LOADED.format(argv=argv, heavy=heavy)
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_cli_send_to_the_default_console_loads_no_backend_package(tmp_path: Path) -> None:
    code = _CLI_LOADED.format(argv=["send", "hello"], heavy=(*OPTIONAL, "processpype.testing"))
    env = {k: v for k, v in os.environ.items() if k != "PROCESSPYPE_CONFIG"}
    result = run_python(code, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0"
