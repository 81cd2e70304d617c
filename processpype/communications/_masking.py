"""The masking of secrets, re-exported from ``processpype.foundation._masking``."""

from processpype.foundation._masking import (
    MASK,
    REDACTED_LOGGERS,
    config_secrets,
    is_secret_key,
    mask_url,
    mask_url_password,
    mask_value,
    redact,
    register_secrets,
    url_secrets,
)

__all__ = [
    "MASK",
    "REDACTED_LOGGERS",
    "config_secrets",
    "is_secret_key",
    "mask_url",
    "mask_url_password",
    "mask_value",
    "redact",
    "register_secrets",
    "url_secrets",
]
