"""The bottom floor: the message models, the errors and the masking of secrets.

Every other package of processpype stands on this one, and it imports none of them at
run time. The floors, bottom to top: ``processpype.foundation``, ``processpype.config``,
``processpype.communications``, then the CLI and ``processpype.testing``.

Users import these names from their documented homes (``processpype``,
``processpype.communications.models``, ``processpype.communications.errors``), which
re-export them from here.
"""
