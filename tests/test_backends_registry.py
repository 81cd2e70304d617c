"""Backend factory: registered factories, entry points, built-ins and the NoOp fallback."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from processpype.communications.backends import (
    available_backends,
    backend_unavailable_reason,
    create_communicator,
    register_backend,
    unregister_backend,
)
from processpype.communications.backends.console import ConsoleCommunicator
from processpype.communications.base import Communicator, NoOpCommunicator
from processpype.communications.models import OutgoingMessage
from processpype.config.models import CommunicatorBackendConfig, ConsoleCommunicatorConfig
from processpype.testing.recording import RecordingCommunicator


def _config(type_name: str) -> CommunicatorBackendConfig:
    return CommunicatorBackendConfig(type=type_name)


@pytest.fixture
def custom_type() -> Iterator[str]:
    yield "pager"
    unregister_backend("pager")


def test_registered_factory_builds_the_backend(custom_type: str) -> None:
    built: list[tuple[str, CommunicatorBackendConfig]] = []

    def factory(name: str, config: CommunicatorBackendConfig) -> Communicator:
        built.append((name, config))
        return RecordingCommunicator(name, config)

    register_backend(custom_type, factory)
    config = CommunicatorBackendConfig(type=custom_type, pager_url="https://p.invalid")  # type: ignore[call-arg]
    communicator = create_communicator("oncall", config)

    assert isinstance(communicator, RecordingCommunicator)
    assert communicator.name == "oncall"
    assert built == [("oncall", config)]
    assert config.model_extra == {"pager_url": "https://p.invalid"}


def test_a_different_factory_under_a_taken_name_is_refused_unless_replacing(
    custom_type: str,
) -> None:
    register_backend(custom_type, RecordingCommunicator)
    with pytest.raises(ValueError, match="already registered"):
        register_backend(custom_type, NoOpCommunicator)
    register_backend(custom_type, NoOpCommunicator, replace=True)

    assert isinstance(create_communicator("x", _config(custom_type)), NoOpCommunicator)


def test_the_same_factory_registered_again_replaces_it(custom_type: str) -> None:
    # What a re-run notebook cell does: a new class object with the same qualified name.
    def define() -> type[RecordingCommunicator]:
        class CellBackend(RecordingCommunicator):
            pass

        return CellBackend

    first, second = define(), define()
    register_backend(custom_type, first)
    register_backend(custom_type, second)

    assert type(create_communicator("x", _config(custom_type))) is second


def test_a_lambda_from_the_same_line_replaces_itself_but_not_another_lambda(
    custom_type: str,
) -> None:
    factories = [lambda name, config: RecordingCommunicator(name) for _ in range(2)]
    other = lambda name, config: NoOpCommunicator(name, config)  # noqa: E731

    register_backend(custom_type, factories[0])
    register_backend(custom_type, factories[1])
    with pytest.raises(ValueError, match="already registered"):
        register_backend(custom_type, other)


def test_factory_must_be_callable(custom_type: str) -> None:
    with pytest.raises(TypeError, match="not callable"):
        register_backend(custom_type, "nope")  # type: ignore[arg-type]


def test_registered_factory_takes_precedence_over_a_builtin() -> None:
    register_backend("console", RecordingCommunicator)
    try:
        communicator = create_communicator("c", ConsoleCommunicatorConfig())
    finally:
        unregister_backend("console")
    assert isinstance(communicator, RecordingCommunicator)


def test_entry_point_group_provides_backends() -> None:
    # processpype's own `recording` type is published through the entry-point group.
    communicator = create_communicator("rec", CommunicatorBackendConfig(type="recording"))
    assert isinstance(communicator, RecordingCommunicator)
    assert available_backends()["recording"] is None


def test_console_builtin_is_created() -> None:
    communicator = create_communicator("out", ConsoleCommunicatorConfig())
    assert isinstance(communicator, ConsoleCommunicator)


def test_base_config_naming_a_builtin_type_is_validated_as_that_type() -> None:
    communicator = create_communicator(
        "out",
        CommunicatorBackendConfig(type="console", stream="stderr"),  # type: ignore[call-arg]
    )
    assert isinstance(communicator.config, ConsoleCommunicatorConfig)
    assert communicator.config.stream == "stderr"


def test_unknown_type_falls_back_to_a_named_noop_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="processpype"):
        first = create_communicator("a", CommunicatorBackendConfig(type="carrier-pigeon"))
        second = create_communicator("b", CommunicatorBackendConfig(type="carrier-pigeon"))
    assert isinstance(first, NoOpCommunicator)
    assert (first.name, second.name) == ("a", "b")
    assert first.is_started
    assert not first.supports_receiving
    assert "unknown backend type 'carrier-pigeon'" in caplog.text
    assert "register_backend" in caplog.text


@pytest.mark.asyncio
async def test_noop_reports_messages_as_skipped_with_its_reason() -> None:
    noop = NoOpCommunicator("gone", CommunicatorBackendConfig(type="x"), reason="because")
    result = await noop.deliver(OutgoingMessage(message="m"))
    assert (result.backend, result.status, result.error) == ("gone", "skipped", "because")


def test_unavailable_reason_for_a_known_builtin_is_none() -> None:
    assert backend_unavailable_reason("console") is None
    assert "unknown backend type" in (backend_unavailable_reason("nope") or "")


MISSING_PACKAGE_SCRIPT = """
import json, logging, sys
for blocked in ("telethon", "aiosmtplib", "httpx"):
    sys.modules[blocked] = None  # as if the extra were not installed
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("processpype").addHandler(Keep())
from processpype.communications.backends import create_communicator, available_backends
from processpype.config.models import CommunicationsConfig
config = CommunicationsConfig.model_validate({"backends": {
    "tg": {"type": "telegram", "api_id": 1, "api_hash": "h", "token": "1:t",
           "chats": {"default": {"chat_id": 1}}},
    "mail": {"type": "email", "from_address": "a@b.c"},
    "mail2": {"type": "email", "from_address": "a@b.c"},
    "hook": {"type": "slack", "url": "https://hooks.invalid/T000/SECRET"},
}})
made = {n: create_communicator(n, c) for n, c in config.backends.items()}
print(json.dumps({
    "types": {n: type(c).__name__ for n, c in made.items()},
    "names": {n: c.name for n, c in made.items()},
    "warnings": records,
    "available": available_backends(),
}))
"""


def test_missing_extra_falls_back_to_noop_naming_package_and_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", MISSING_PACKAGE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["types"].values()) == {"NoOpCommunicator"}
    assert data["names"] == {"tg": "tg", "mail": "mail", "mail2": "mail2", "hook": "hook"}
    warnings = "\n".join(data["warnings"])
    assert "'telethon'" in warnings
    assert "processpype[telegram]" in warnings
    assert "'aiosmtplib'" in warnings
    assert "processpype[email]" in warnings
    assert "processpype[webhook]" in warnings
    assert "SECRET" not in warnings
    assert "processpype[email]" in data["available"]["email"]
    assert data["available"]["console"] is None


def test_each_row_of_the_builtin_table_names_its_config_and_communicator() -> None:
    import importlib

    from processpype.config.models import BUILTIN_BACKEND_TYPES, BUILTIN_BACKENDS

    assert set(BUILTIN_BACKEND_TYPES) == set(BUILTIN_BACKENDS)
    for type_name, builtin in BUILTIN_BACKENDS.items():
        assert builtin.config.model_fields["type"].default == type_name
        assert BUILTIN_BACKEND_TYPES[type_name] is builtin.config
        module_name, _, class_name = builtin.communicator.partition(":")
        communicator = getattr(importlib.import_module(module_name), class_name)
        assert issubclass(communicator, Communicator), type_name
        assert (builtin.package is None) == (builtin.extra == ""), type_name
