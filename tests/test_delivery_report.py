"""DeliveryReport: ok, per-backend results and raise_for_errors."""

from __future__ import annotations

import pytest

from processpype.communications import Notifier
from processpype.communications.delivery import (
    COMMUNICATIONS_DISABLED,
    DeliveryReport,
    DeliveryResult,
)
from processpype.communications.errors import DeliveryError
from processpype.communications.models import OutgoingMessage

MESSAGE = OutgoingMessage(message="x", label="ops")


def test_report_is_ok_when_nothing_failed() -> None:
    report = DeliveryReport(
        message=MESSAGE,
        results=(DeliveryResult.delivered("a", attempts=2), DeliveryResult.skipped("b", "muted")),
    )
    assert report.ok
    assert report.raise_for_errors() is report
    assert [r.backend for r in report.delivered] == ["a"]


def test_report_without_results_is_not_ok_and_names_the_label() -> None:
    report = DeliveryReport(message=MESSAGE)
    assert not report.ok
    with pytest.raises(DeliveryError, match="no backend handles label 'ops'") as caught:
        report.raise_for_errors()
    assert caught.value.report is report


def test_raise_for_errors_names_every_failed_backend_and_why() -> None:
    report = DeliveryReport(
        message=MESSAGE,
        results=(
            DeliveryResult.delivered("console"),
            DeliveryResult.failed("mail", ConnectionError("smtp.example.com:587 down"), attempts=3),
            DeliveryResult.failed("tg", "flood wait"),
        ),
    )
    assert not report.ok
    assert [r.backend for r in report.failed] == ["mail", "tg"]
    with pytest.raises(DeliveryError) as caught:
        report.raise_for_errors()
    text = str(caught.value)
    assert "mail: ConnectionError: smtp.example.com:587 down" in text
    assert "tg: flood wait" in text
    assert report.result_for("mail").attempts == 3  # type: ignore[union-attr]


def test_report_reads_as_one_line_per_backend() -> None:
    report = DeliveryReport(
        message=MESSAGE,
        results=(DeliveryResult.delivered("a"), DeliveryResult.failed("b", "down")),
    )
    assert str(report) == "a: delivered, b: failed (down)"


def test_a_report_where_every_backend_skipped_is_not_ok_and_says_why() -> None:
    report = DeliveryReport(
        message=MESSAGE,
        results=(
            DeliveryResult.skipped("pager", "unknown backend type 'pagerduty'"),
            DeliveryResult.skipped("mail", "no recipient"),
        ),
    )

    assert not report.ok
    assert str(report).startswith("nothing delivered, pager: skipped (unknown backend type")
    with pytest.raises(DeliveryError) as caught:
        report.raise_for_errors()
    text = str(caught.value)
    assert "nothing was delivered for label 'ops'" in text
    assert "pager: unknown backend type 'pagerduty'; mail: no recipient" in text


def test_a_report_skipped_because_communications_are_disabled_is_ok() -> None:
    report = DeliveryReport(
        message=MESSAGE,
        results=(
            DeliveryResult.skipped("a", COMMUNICATIONS_DISABLED),
            DeliveryResult.skipped("b", COMMUNICATIONS_DISABLED),
        ),
    )

    assert report.ok
    assert report.raise_for_errors() is report


def test_a_notifier_with_an_unknown_backend_type_reports_not_ok() -> None:
    config = {"enabled": True, "backends": {"pager": {"type": "pagerduty-not-installed"}}}
    with Notifier(config) as notifier:
        report = notifier.send("disk full", timeout=5)

    assert not report.ok
    assert report.skipped[0].backend == "pager"
    with pytest.raises(DeliveryError, match="unknown backend type 'pagerduty-not-installed'"):
        report.raise_for_errors()


def test_a_disabled_notifier_reports_ok() -> None:
    with pytest.warns(UserWarning, match="communications.enabled is false"):
        notifier = Notifier({"enabled": False, "backends": {"log": {"type": "console"}}})
    with notifier:
        report = notifier.send("disk full", timeout=5)

    assert report.ok
    assert report.results[0].error == COMMUNICATIONS_DISABLED
