"""communications.outbox: defaults, validation, and a password that never shows."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from processpype.communications.notifier import Notifier
from processpype.communications.outbox.worker import OutboxWorker
from processpype.config.loader import config_from_mapping
from processpype.config.models import CommunicationsConfig
from processpype.config.outbox import OutboxConfig, mask_url_password

SECRET = "s3cr3t-Pa55"
URL = f"redis://:{SECRET}@redis.internal:6379/0"


def test_defaults_are_those_of_the_issue() -> None:
    outbox = OutboxConfig.model_validate({"url": "redis://localhost:6379/0"})
    assert outbox.name == "processpype"
    assert outbox.claim_after == 60
    assert outbox.max_deliveries == 5
    assert outbox.fallback == "error"


def test_without_an_outbox_section_there_is_none() -> None:
    assert CommunicationsConfig().outbox is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (URL, "redis://:**********@redis.internal:6379/0"),
        (
            f"rediss://alerts:{SECRET}@redis.internal/2",
            "rediss://alerts:**********@redis.internal/2",
        ),
        ("redis://redis.internal:6379/0", "redis://redis.internal:6379/0"),
    ],
)
def test_display_url_masks_only_the_password(url: str, shown: str) -> None:
    assert OutboxConfig.model_validate({"url": url}).display_url == shown
    assert mask_url_password(url) == shown


def test_display_url_keeps_an_ipv6_host_in_brackets() -> None:
    # The masker used to rebuild the host from its parsed name, dropping the brackets.
    url = f"redis://:{SECRET}@[::1]:6379/0"
    assert OutboxConfig.model_validate({"url": url}).display_url == (
        "redis://:**********@[::1]:6379/0"
    )


def test_password_never_shows_in_repr_dump_or_worker() -> None:
    config = CommunicationsConfig.model_validate({"enabled": True, "outbox": {"url": URL}})
    assert SECRET not in repr(config)
    assert SECRET not in str(config.model_dump())
    assert SECRET not in config.model_dump_json()
    assert SECRET not in repr(OutboxWorker(config))
    notifier = Notifier(
        {"enabled": True, "backends": {"c": {"type": "console"}}, "outbox": {"url": URL}},
        start=False,
    )
    assert SECRET not in repr(notifier.communicator("c"))
    assert "redis://:**********@redis.internal:6379/0" in repr(notifier.communicator("c"))
    notifier.close()


def test_a_url_that_is_not_redis_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        OutboxConfig.model_validate({"url": f"http://:{SECRET}@redis.internal/"})
    assert "redis://" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_config_error_names_the_key_path() -> None:
    with pytest.raises(ValueError, match=r"communications\.outbox\.max_deliveries") as caught:
        config_from_mapping(
            {"outbox": {"url": URL, "max_deliveries": 0}}, prefix=("communications",)
        )
    assert SECRET not in str(caught.value)


def test_unknown_outbox_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="claim_afer"):
        config_from_mapping({"outbox": {"url": URL, "claim_afer": 5}})


@pytest.mark.parametrize("key", ["claim_after", "connect_timeout", "outcome_ttl", "lease_time"])
def test_an_infinite_duration_is_refused_naming_the_key(key: str) -> None:
    # Workers and leases turn these into milliseconds: inf would overflow there, later.
    with pytest.raises(ValueError, match=rf"communications\.outbox\.{key}"):
        config_from_mapping({"outbox": {"url": URL, key: float("inf")}}, prefix=("communications",))
