# The names of ``processpype.communications``, each listed once: type checkers read them
# here, and ``processpype._lazy.attach_stub`` reads them at run time.

from processpype.communications.backends import create_communicator as create_communicator
from processpype.communications.backends import register_backend as register_backend
from processpype.communications.base import Communicator as Communicator
from processpype.communications.base import NoOpCommunicator as NoOpCommunicator
from processpype.communications.delivery import DeliveryReport as DeliveryReport
from processpype.communications.delivery import DeliveryResult as DeliveryResult
from processpype.communications.dispatcher import (
    CommunicationDispatcher as CommunicationDispatcher,
)
from processpype.communications.dispatcher import emit_message as emit_message
from processpype.communications.dispatcher import get_dispatcher as get_dispatcher
from processpype.communications.notifier import Notifier as Notifier
from processpype.communications.setup import init_communications as init_communications
from processpype.communications.setup import shutdown_communications as shutdown_communications
from processpype.foundation.errors import ConfigError as ConfigError
from processpype.foundation.errors import DeliveryError as DeliveryError
from processpype.foundation.errors import ProcesspypeError as ProcesspypeError
from processpype.foundation.errors import SendError as SendError
from processpype.foundation.models import Attachment as Attachment
from processpype.foundation.models import IncomingMessage as IncomingMessage
from processpype.foundation.models import MessageHandler as MessageHandler
from processpype.foundation.models import MessageSeverity as MessageSeverity
from processpype.foundation.models import OutgoingMessage as OutgoingMessage
