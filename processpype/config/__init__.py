"""Configuration models and YAML loading."""

from processpype.config.loader import load_config, load_config_text
from processpype.config.models import (
    CommunicationsConfig,
    CommunicatorBackendConfig,
    ConfigurationModel,
    EmailCommunicatorConfig,
    TelegramChatConfig,
    TelegramCommunicatorConfig,
)

__all__ = [
    "CommunicationsConfig",
    "CommunicatorBackendConfig",
    "ConfigurationModel",
    "EmailCommunicatorConfig",
    "TelegramChatConfig",
    "TelegramCommunicatorConfig",
    "load_config",
    "load_config_text",
]
