"""The built-in mock LLM upstream (both dialects, deterministic text, injected faults)."""

from __future__ import annotations

from .faults import Faults, FaultSpecError, parse_faults
from .server import build_mock_app, run_mock, start_mock
from .state import (
    MAX_RECORDS,
    MOCK_SETTINGS,
    MOCK_STATE,
    MockSettings,
    MockState,
    RecordedRequest,
    StreamRecord,
)

__all__ = [
    "MAX_RECORDS",
    "MOCK_SETTINGS",
    "MOCK_STATE",
    "FaultSpecError",
    "Faults",
    "MockSettings",
    "MockState",
    "RecordedRequest",
    "StreamRecord",
    "build_mock_app",
    "parse_faults",
    "run_mock",
    "start_mock",
]
