"""What every codec shares: token usage, SSE framing, the tables that map
finish/stop reasons and error types between the OpenAI and Anthropic dialects (an upstream
event is read by its dialect, `dialects/reader.py`, re-exported here)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..dialects.anthropic import FINISH_REASONS as FINISH_REASONS
from ..dialects.anthropic import STOP_REASONS as STOP_REASONS
from ..dialects.anthropic import usage_from_anthropic as usage_from_anthropic
from ..dialects.base import DONE as DONE
from ..dialects.base import TokenUsage as TokenUsage
from ..dialects.base import choice_zero as choice_zero
from ..dialects.base import count as count
from ..dialects.base import error_message as error_message
from ..dialects.base import sse as sse
from ..dialects.openai import usage_from_openai as usage_from_openai
from ..dialects.reader import NOT_JSON as NOT_JSON
from ..dialects.reader import load_object as load_object

# The finish/stop reason tables are the Anthropic dialect's (one table, both ways), and
# `choice_zero`/`error_message` the dialects' readers: imported here for the codecs.
#: Anthropic error.type -> (OpenAI error.type, OpenAI error.code), the gateway's own codes
#: where it has one (see gateway.errors) and the Anthropic type otherwise.
OPENAI_ERRORS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "invalid_request_error": ("invalid_request_error", "invalid_request"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "authentication_error": ("authentication_error", "invalid_api_key"),
    "permission_error": ("permission_error", "permission_error"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "not_found_error": ("invalid_request_error", "not_found"),
    "rate_limit_error": ("rate_limit_error", "rate_limit_exceeded"),
    "timeout_error": ("server_error", "timeout"),
    "api_error": ("server_error", "upstream_error"),
    "overloaded_error": ("server_error", "overloaded"),
})

#: OpenAI error.code, then error.type -> Anthropic error.type.
_ANTHROPIC_BY_CODE: Mapping[str, str] = MappingProxyType({
    "model_not_found": "not_found_error",
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "rate_limit_error",
    "invalid_api_key": "authentication_error",
    "overloaded": "overloaded_error",
    "request_too_large": "request_too_large",
})
_ANTHROPIC_BY_TYPE: Mapping[str, str] = MappingProxyType({
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "insufficient_quota": "rate_limit_error",
    "requests": "rate_limit_error",  # OpenAI's own 429s name the exhausted limit as the type
    "tokens": "rate_limit_error",
    "server_error": "api_error",
})
#: HTTP status -> Anthropic error.type, when the body says nothing usable.
_ANTHROPIC_BY_STATUS: Mapping[int, str] = MappingProxyType({
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
})


def anthropic_error_type(openai_type: object, code: object, status: int) -> str:
    if isinstance(code, str) and code in _ANTHROPIC_BY_CODE:
        return _ANTHROPIC_BY_CODE[code]
    if isinstance(openai_type, str) and openai_type in _ANTHROPIC_BY_TYPE:
        return _ANTHROPIC_BY_TYPE[openai_type]
    return _ANTHROPIC_BY_STATUS.get(status, "api_error" if status >= 500 or status < 400 else
                                    "invalid_request_error")


def openai_error(anthropic_type: object, message: str, status: int) -> dict[str, Any]:
    """OpenAI's error object for an Anthropic error type (or, failing that, the status)."""
    kind = anthropic_type if isinstance(anthropic_type, str) and anthropic_type in OPENAI_ERRORS else (
        _ANTHROPIC_BY_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error"))
    openai_type, code = OPENAI_ERRORS[kind]
    return {"message": message, "type": openai_type, "param": None, "code": code}
