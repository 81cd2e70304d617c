# The names of ``processpype``, each listed once: type checkers read them here, and
# ``processpype._lazy.attach_stub`` reads them at run time. Names that
# ``processpype.communications`` also exports come through its face.

from processpype.communications import Attachment as Attachment
from processpype.communications import ConfigError as ConfigError
from processpype.communications import DeliveryError as DeliveryError
from processpype.communications import DeliveryReport as DeliveryReport
from processpype.communications import DeliveryResult as DeliveryResult
from processpype.communications import IncomingMessage as IncomingMessage
from processpype.communications import MessageSeverity as MessageSeverity
from processpype.communications import Notifier as Notifier
from processpype.communications import OutgoingMessage as OutgoingMessage
from processpype.communications import ProcesspypeError as ProcesspypeError
from processpype.config import CommunicationsConfig as CommunicationsConfig
from processpype.config import load_config as load_config

__version__: str
