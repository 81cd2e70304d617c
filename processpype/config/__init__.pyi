# The names of ``processpype.config``, each listed once: type checkers read them here,
# and ``processpype._lazy.attach_stub`` reads them at run time.

from processpype.config.loader import load_config as load_config
from processpype.config.loader import load_config_text as load_config_text
from processpype.config.models import CommunicationsConfig as CommunicationsConfig
from processpype.config.models import CommunicatorBackendConfig as CommunicatorBackendConfig
from processpype.config.models import ConfigurationModel as ConfigurationModel
from processpype.config.models import EmailCommunicatorConfig as EmailCommunicatorConfig
from processpype.config.models import TelegramChatConfig as TelegramChatConfig
from processpype.config.models import TelegramCommunicatorConfig as TelegramCommunicatorConfig
