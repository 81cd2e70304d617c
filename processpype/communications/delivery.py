"""Per-backend outcomes of one message: ``DeliveryResult`` and ``DeliveryReport``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from processpype.foundation._masking import redact
from processpype.foundation.errors import DeliveryError, describe_error
from processpype.foundation.models import OutgoingMessage

__all__ = [
    "COMMUNICATIONS_DISABLED",
    "IDEMPOTENCY_KEY",
    "DeliveryReport",
    "DeliveryResult",
    "DeliveryStatus",
]

DeliveryStatus = Literal["delivered", "failed", "skipped", "queued"]
"""``queued``: a Redis outbox has the message and a worker will deliver it (counted as ok)."""

IDEMPOTENCY_KEY = "idempotency_key"
"""Metadata key of a message's stable id: the email ``Message-ID`` and the webhook
``Idempotency-Key`` header are made from it, so a resent message can be recognised."""

COMMUNICATIONS_DISABLED = "communications are disabled (communications.enabled is false)"
"""The skip reason of every result while communications are switched off on purpose."""


class DeliveryResult(BaseModel):
    """The outcome of one message at one backend."""

    model_config = ConfigDict(frozen=True)

    backend: str = Field(description="Name of the communicator")
    status: DeliveryStatus = Field(description="delivered, failed, skipped or queued")
    error: str | None = Field(default=None, description="Why it failed or was skipped")
    attempts: int = Field(default=0, ge=0, description="How many times it was tried")
    warnings: tuple[str, ...] = Field(
        default=(),
        description="What a delivery left out (files a service cannot take, a cut text)",
    )
    reference: tuple[str, ...] = Field(
        default=(),
        description=(
            "The backend's ids of what it posted (one per piece of a split message), "
            "for editing it later; empty when the backend cannot edit"
        ),
    )

    @field_validator("error")
    @classmethod
    def _masked(cls, error: str | None) -> str | None:
        # Whoever built the result (a third-party backend too), a secret that a server or
        # a library quoted never reaches the report.
        return redact(error) if error else error

    @classmethod
    def delivered(
        cls, backend: str, *, attempts: int = 1, reference: tuple[str, ...] = ()
    ) -> DeliveryResult:
        """A result for a message that reached the backend's service.

        ``reference`` names what was posted, for ``Communicator.edit`` later.
        """
        if (
            reference
            or cls is not DeliveryResult
            or type(backend) is not str
            or type(attempts) is not int
        ):
            return cls(backend=backend, status="delivered", attempts=attempts, reference=reference)
        # Results are frozen values, and "delivered" ones repeat for every message of a
        # backend: validating once per (backend, attempts) keeps pydantic off the hot
        # path (bench_notifier: send_nowait throughput, see docs/benchmarks.md).
        key = (backend, attempts)
        result = _DELIVERED.get(key)
        if result is None:
            result = cls(backend=backend, status="delivered", attempts=attempts)
            if len(_DELIVERED) >= _DELIVERED_LIMIT:
                _DELIVERED.clear()
            _DELIVERED[key] = result
        return result

    @classmethod
    def failed(
        cls, backend: str, error: BaseException | str, *, attempts: int = 1
    ) -> DeliveryResult:
        """A result for a message that did not go out."""
        text = error if isinstance(error, str) else describe_error(error)
        return cls(backend=backend, status="failed", error=text, attempts=attempts)

    @classmethod
    def skipped(cls, backend: str, reason: str) -> DeliveryResult:
        """A result for a message the backend chose not to send (and why)."""
        return cls(backend=backend, status="skipped", error=reason, attempts=0)

    @classmethod
    def queued(cls, backend: str) -> DeliveryResult:
        """A result for a message put in the outbox, for a worker to deliver."""
        return cls(backend=backend, status="queued", attempts=0)


_DELIVERED: dict[tuple[str, int], DeliveryResult] = {}
_DELIVERED_LIMIT = 1024
"""Distinct (backend, attempts) "delivered" results kept; the cache is cleared beyond."""


class DeliveryReport(BaseModel):
    """Every backend's outcome for one message."""

    model_config = ConfigDict(frozen=True)

    message: OutgoingMessage = Field(description="The message that was sent")
    results: tuple[DeliveryResult, ...] = Field(default=(), description="One result per backend")

    @property
    def ok(self) -> bool:
        """True when at least one backend delivered (or queued it in the outbox) and none failed.

        Also True when every result was skipped because communications are disabled
        (the deliberate off switch). A message that no backend handles, or that every
        backend skipped (an unknown type, a missing package, no recipient), is not ok.
        """
        results = self.results
        if any(r.status == "failed" for r in results):
            return False
        if any(r.status in ("delivered", "queued") for r in results):
            return True
        return bool(results) and all(r.error == COMMUNICATIONS_DISABLED for r in results)

    @property
    def skipped(self) -> tuple[DeliveryResult, ...]:
        """The results whose status is ``skipped``."""
        return tuple(r for r in self.results if r.status == "skipped")

    @property
    def failed(self) -> tuple[DeliveryResult, ...]:
        """The results whose status is ``failed``."""
        return tuple(r for r in self.results if r.status == "failed")

    @property
    def delivered(self) -> tuple[DeliveryResult, ...]:
        """The results whose status is ``delivered``."""
        return tuple(r for r in self.results if r.status == "delivered")

    @property
    def queued(self) -> tuple[DeliveryResult, ...]:
        """The results whose status is ``queued`` (in the outbox, not delivered yet)."""
        return tuple(r for r in self.results if r.status == "queued")

    def result_for(self, backend: str) -> DeliveryResult | None:
        """The result of the backend named ``backend``, or None."""
        return next((r for r in self.results if r.backend == backend), None)

    def raise_for_errors(self) -> DeliveryReport:
        """Raise ``DeliveryError`` unless ``ok``; return the report otherwise."""
        if self.ok:
            return self
        if not self.results:
            raise DeliveryError(
                f"no backend handles label {self.message.label!r}; the message went nowhere",
                report=self,
            )
        if not self.failed:
            details = "; ".join(f"{r.backend}: {r.error}" for r in self.results)
            raise DeliveryError(
                f"nothing was delivered for label {self.message.label!r}: every backend "
                f"skipped it ({details})",
                report=self,
            )
        details = "; ".join(f"{r.backend}: {r.error}" for r in self.failed)
        raise DeliveryError(f"delivery failed at {details}", report=self)

    def __str__(self) -> str:
        if not self.results:
            return f"label {self.message.label!r}: no backend"
        parts = []
        if not self.ok and not self.failed:
            parts.append("nothing delivered")
        for r in self.results:
            part = f"{r.backend}: {r.status}"
            if r.error:
                part += f" ({r.error})"
            for warning in r.warnings:
                part += f" [warning: {warning}]"
            parts.append(part)
        return ", ".join(parts)
