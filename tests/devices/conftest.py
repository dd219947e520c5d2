from __future__ import annotations

import pytest
from devices_helpers import RecordingBus


@pytest.fixture
def bus() -> RecordingBus:
    return RecordingBus()
