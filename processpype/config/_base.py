"""``ConfigurationModel``: the base of every configuration model (documented in
``processpype.config.models``, which re-exports it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ConfigurationModel"]


class ConfigurationModel(BaseModel):
    """Base of every processpype configuration model (unknown keys are errors)."""

    # Errors never echo input values: a value could be a token or a password.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)
