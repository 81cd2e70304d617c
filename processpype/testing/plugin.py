"""pytest plugin (entry point ``processpype``): fixtures for code that sends notifications.

Optional packages are imported inside the fixtures only, so pytest keeps working for
projects that install processpype without the ``testing`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from processpype.testing.recording import RecordingCommunicator


@pytest.fixture
def processpype_recorder() -> RecordingCommunicator:
    """A fresh ``RecordingCommunicator`` named ``recorder``."""
    from processpype.testing.recording import RecordingCommunicator

    return RecordingCommunicator("recorder")
