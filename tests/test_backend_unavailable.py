"""A backend module imported without its package raises ``BackendUnavailableError``.

Every extra is installed here, so each test hides the package in a fresh interpreter
(``sys.modules[name] = None`` makes its import fail as if it were not installed).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_SCRIPT = """
import sys
sys.modules[{package!r}] = None
from processpype.communications.errors import BackendUnavailableError
try:
    import processpype.communications.backends.{module}
except BackendUnavailableError as exc:
    assert isinstance(exc, ImportError)
    print(exc.backend_type, exc.package, exc.extra, exc.name)
    print(exc)
else:
    raise SystemExit("no BackendUnavailableError")
"""


@pytest.mark.parametrize(
    ("module", "package", "backend_type", "extra"),
    [
        ("telegram", "telethon", "telegram", "telegram"),
        ("email", "aiosmtplib", "email", "email"),
        ("webhook", "httpx", "webhook", "webhook"),
    ],
)
def test_a_backend_without_its_package_raises_backend_unavailable_naming_the_extra(
    module: str, package: str, backend_type: str, extra: str
) -> None:
    script = _SCRIPT.format(package=package, module=module)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr + done.stdout
    fields, message = done.stdout.splitlines()
    assert fields == f"{backend_type} {package} {extra} {package}"
    assert f"backend type {backend_type!r}" in message
    assert f"{package!r} package" in message
    assert f"pip install 'processpype[{extra}]'" in message
