"""Shared fixtures of the processpype test suite."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from processpype.communications import dispatcher as dispatcher_module

if TYPE_CHECKING:
    from processpype.testing.redis import RedisTestServer

# The notebook test needs nbclient and ipykernel: it runs in tox's jupyter environment.
collect_ignore_glob = []
if importlib.util.find_spec("nbclient") is None or importlib.util.find_spec("ipykernel") is None:
    collect_ignore_glob.append("notebooks/*")
# Tests that assume no optional extra is installed run in tox's minimal environment.
if importlib.util.find_spec("aiosmtplib") is not None:
    collect_ignore_glob.append("minimal/*")


@pytest.fixture(autouse=True)
def _fresh_global_dispatcher() -> Iterator[None]:
    """Every test starts with no global dispatcher, and leaves none behind."""
    dispatcher_module.reset_dispatcher()
    yield
    dispatcher_module.reset_dispatcher()


@pytest.fixture(autouse=True)
def _telegram_sessions_in_a_temporary_folder(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Telegram backend keeps its login under XDG_DATA_HOME: never the real one in tests."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))


@pytest.fixture
def db(processpype_redis: RedisTestServer) -> Iterator[Any]:
    """A synchronous redis-py client, to look at what the outbox keeps."""
    import redis  # here, not at the top: the minimal environment has no redis-py

    client = redis.Redis.from_url(processpype_redis.url, decode_responses=True)
    yield client
    client.close()
