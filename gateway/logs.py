"""Structured JSON logs (structlog): one line per request at its end, plus lifecycle events.

The logger is built per app (no global structlog configuration), so tests can capture it.
Nothing that could hold a key is ever passed to it: callers log names and counts only.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import FilteringBoundLogger


def _orjson_dumps(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def make_logger(stream: TextIO | None = None, *, level: int = 20) -> FilteringBoundLogger:
    logger: FilteringBoundLogger = structlog.wrap_logger(
        structlog.PrintLogger(stream or sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ],
    )
    return logger
