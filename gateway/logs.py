"""Structured JSON logs (structlog): one line per request at its end, plus lifecycle events.
The request line skips the processor chain (`info_line`): same fields, one orjson pass.

The logger is built per app (no global structlog configuration), so tests can capture it.
Nothing that could hold a key is ever passed to it: callers log names and counts only.
Each line is ONE write (`WriteLogger`), so the lines of several workers sharing stderr
never interleave.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import FilteringBoundLogger


def _orjson_dumps(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def make_logger(stream: TextIO | None = None, *, level: int = 20) -> FilteringBoundLogger:
    """The bound logger itself, not structlog's lazy proxy (`wrap_logger` alone): the proxy
    assembles a new bound logger on every call made through it, once per request."""
    logger: FilteringBoundLogger = structlog.wrap_logger(
        structlog.WriteLogger(stream or sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ],
    ).bind()
    return logger


def info_line(logger: FilteringBoundLogger, event: str, fields: dict[str, Any]) -> None:
    """`logger.info(event, **fields)` for a `make_logger` logger, rendered in ONE orjson pass
    from a plain dict (the request line's hot path): the same keys in the same order (bound
    context, fields, event, level, timestamp) as the processor chain writes. Any other
    logger gets the plain call. `fields` is the caller's to give away (it becomes the line)."""
    output = getattr(logger, "_logger", None)
    if not isinstance(output, structlog.WriteLogger):
        logger.info(event, **fields)
        return
    if not logger.is_enabled_for(logging.INFO):
        return
    context: dict[str, Any] = getattr(logger, "_context", {})
    line = {**context, **fields} if context else fields
    line["event"] = event
    line["level"] = "info"
    # TimeStamper(fmt="iso", utc=True) writes isoformat() with a "Z": so does OPT_UTC_Z.
    line["timestamp"] = datetime.now(UTC)
    output.msg(orjson.dumps(line, default=str, option=orjson.OPT_UTC_Z).decode())


def route_library_logs(stream: TextIO | None = None, *, level: int = logging.WARNING) -> None:
    """Send the standard-library loggers (aiohttp's "Error handling request", asyncio's
    warnings) through the same JSON rendering: one line each, an exception named by its
    type only (see `_exception_type_only`). Called once by the CLI at start; the library's logging
    is process-wide by nature."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_exception_type_only)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _exception_type_only(record: logging.LogRecord) -> bool:
    """Keep an exception's type, drop its text and traceback: a library's message can quote
    the request (aiohttp's "Got more than 8190 bytes when reading: b'Bearer ...'")."""
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        record.msg = f"{record.getMessage()} ({type(exc).__name__})"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
    return True
