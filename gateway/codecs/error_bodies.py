"""An upstream's JSON error body in one dialect -> the same error in the client's dialect.

OpenAI: `{"error": {"message", "type", "param", "code"}}`; Anthropic:
`{"type": "error", "error": {"type", "message"}}`. Either shape is read whatever `from_dialect`
says (OpenAI-compatible servers vary); a body that is not JSON or names no message becomes a
generic message with the status. Types map through common.OPENAI_ERRORS and back.
"""

from __future__ import annotations

import orjson

from ..dialects import DIALECTS
from .common import anthropic_error_type, error_message, openai_error


def translate_error_body(body: bytes, from_dialect: str, to_dialect: str, status: int) -> bytes:
    if from_dialect not in DIALECTS or to_dialect not in DIALECTS:
        raise ValueError(f"unknown dialect: {from_dialect!r} -> {to_dialect!r}")
    generic = f"the upstream answered {status}"
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error_message(error, generic)
    kind = error.get("type") if isinstance(error, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    # An Anthropic body says its type at the top ("error"); its error.type is Anthropic's.
    anthropic_shaped = isinstance(parsed, dict) and parsed.get("type") == "error"
    if to_dialect == "openai":
        anthropic_type = kind if anthropic_shaped else anthropic_error_type(kind, code, status)
        return orjson.dumps({"error": openai_error(anthropic_type, message, status)})
    if not anthropic_shaped or not isinstance(kind, str):
        kind = anthropic_error_type(kind, code, status)
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
