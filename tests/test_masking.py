"""The masking rules: which config values are secrets, and how text is redacted."""

from __future__ import annotations

import gc
import logging
import threading

import pytest

from processpype.communications.delivery import DeliveryResult
from processpype.foundation._masking import (
    MASK,
    _registry,
    mask_url,
    mask_value,
    redact,
    register_secrets,
    url_secrets,
)


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "bot_token",
        "api_key",
        "routing_key",
        "integration_key",
        "client_secret",
        "password",
        "db_passwd",
        "auth",
        "credentials",
        "session_string",
        "private_key",
    ],
)
def test_a_value_under_a_secret_looking_key_is_masked(key: str) -> None:
    assert mask_value({key: "s3cr3t-value"}) == {key: MASK}


@pytest.mark.parametrize("key", ["team", "author", "channel", "labels", "name"])
def test_ordinary_keys_are_shown(key: str) -> None:
    assert mask_value({key: "ops"}) == {key: "ops"}


def test_secrets_are_masked_in_nested_lists_and_mappings() -> None:
    data = {"targets": [{"name": "ops", "token": "t-1"}, {"name": "dev", "token": "t-2"}]}

    assert mask_value(data) == {
        "targets": [{"name": "ops", "token": MASK}, {"name": "dev", "token": MASK}]
    }


def test_every_leaf_under_a_secret_key_is_masked() -> None:
    data = {"credentials": {"user": "bob", "pin": 1234}, "tokens": ["a", "b"]}

    assert mask_value(data) == {"credentials": {"user": MASK, "pin": MASK}, "tokens": [MASK] * 2}


def test_a_url_loses_its_userinfo_password_and_a_url_key_keeps_only_its_host() -> None:
    data = {
        "mirror": "postgres://pager:pw1234@db.example.com:5432/pager",
        "events_url": "https://events.example.com/v2/enqueue?token=abc",
    }

    assert mask_value(data) == {
        "mirror": f"postgres://pager:{MASK}@db.example.com:5432/pager",
        "events_url": f"https://events.example.com/{MASK}",
    }


def test_mask_url_keeps_scheme_host_and_port_only() -> None:
    assert mask_url("https://user:pw@[::1]:8443/a/b?c=d") == f"https://[::1]:8443/{MASK}"
    assert mask_url("not a url") == MASK


def test_url_secrets_hold_what_a_server_may_echo_but_no_plain_words() -> None:
    found = url_secrets("https://hooks.slack.com/services/T0/B0/XyZ123abcDEF456?token=q%2Fv1")

    assert "/services/T0/B0/XyZ123abcDEF456" in found
    assert "XyZ123abcDEF456" in found
    assert "q%2Fv1" in found  # as written
    assert "q/v1" in found  # and percent-decoded
    assert "services" not in found  # a word of the path, not a secret
    assert url_secrets("https://example.com/") == []


class _Owner:
    """Something whose lifetime bounds registered secrets."""


def test_registered_secrets_are_masked_while_their_owner_lives() -> None:
    owner = _Owner()
    register_secrets(owner, ["hunter2-longer", "https://h.example.com/p/tok3n42"])

    text = "posting to https://h.example.com/p/tok3n42 with hunter2-longer"
    assert redact(text) == f"posting to https://h.example.com/{MASK} with {MASK}"

    del owner
    gc.collect()
    assert redact(text) == text


def test_short_secrets_are_not_masked_in_free_text() -> None:
    owner = _Owner()
    register_secrets(owner, ["abc"])

    assert redact("abc def") == "abc def"
    del owner


def test_library_log_records_are_redacted_at_creation(caplog: pytest.LogCaptureFixture) -> None:
    owner = _Owner()
    register_secrets(owner, ["lib-secret-987"])
    caplog.set_level(logging.DEBUG, logger="httpcore.http11")

    logging.getLogger("httpcore.http11").debug("headers=%r", [(b"Location", b"/lib-secret-987")])
    logging.getLogger("someone.else").warning("lib-secret-987")  # not ours to touch

    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == f"headers=[(b'Location', b'/{MASK}')]"
    assert "lib-secret-987" in messages[1]
    del owner


def test_a_result_built_by_a_third_party_backend_is_masked() -> None:
    owner = _Owner()
    register_secrets(owner, ["hand-made-secret"])

    result = DeliveryResult(backend="pager", status="failed", error="401 for hand-made-secret")

    assert result.error == f"401 for {MASK}"
    del owner


def test_a_switch_under_a_secret_looking_key_is_shown() -> None:
    assert mask_value({"use_auth": True, "session_timeout": 3600}) == {
        "use_auth": True,
        "session_timeout": MASK,
    }


def test_logging_and_finalizers_never_wait_for_a_busy_registry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The garbage collector may run a finalizer, or an __del__ that logs (asyncio's
    # "Task was destroyed"), while this very thread holds the registry's lock.
    owner = _Owner()
    register_secrets(owner, ["busy-secret-42"])
    gone = _Owner()
    register_secrets(gone, ["gone-secret-42"])
    caplog.set_level(logging.ERROR, logger="asyncio")
    done = threading.Event()

    def inside_the_lock() -> None:
        with _registry._lock:
            _registry.discard(("gone-secret-42",))
            logging.getLogger("asyncio").error("Task was destroyed: busy-secret-42")
        done.set()

    worker = threading.Thread(target=inside_the_lock, daemon=True)
    worker.start()

    assert done.wait(5), "logging blocked on the registry's lock"
    assert caplog.records[-1].getMessage() == f"Task was destroyed: {MASK}"
    assert redact("gone-secret-42") == "gone-secret-42"  # the queued discard was applied
    del owner, gone
