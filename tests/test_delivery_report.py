"""DeliveryReport: ok, per-backend results and raise_for_errors."""

from __future__ import annotations

import pytest

from processpype.communications.delivery import DeliveryReport, DeliveryResult
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
