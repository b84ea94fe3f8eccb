"""The mock upstream's fault spec: which misbehaviour a request asks for, parsed with no I/O.

A spec comes from the `x-mock-fault` header and/or the model name after a `+`
(`mock-1+fail=2,drop=3`); both are joined with a comma. Grammar:

    spec      = [directive *("," directive)]
    directive = "fail=" N | "fail_status=" STATUS | "retry_after=" S | "retry_after_date"
              | "status=" STATUS | "down_for=" S
              | "drop=" K | "garbage=" K | "silence=" S "@" K | "stall=" S "@" K
              | "delay=" S | "tps=" X | "words=" N | "drip=" P
              | "fragment" | "crlf" | "cr" | "multiline" | "hang" | "noend"
              | "tool" | "tools=" M | "text_then_tool"
              | "context_overflow" | "content_filter" | "no_prefill" | "echo_key" | "html"
              | "big=" N | "gzip"

N and K are integers >= 0, M an integer >= 1, S and X numbers >= 0, P a number > 0,
STATUS an HTTP error status (400-599). K always counts content chunks already written
(one text word or one tool-argument fragment each). What each does:

- fail=N: the first N attempts per (spec, x-request-id) answer `fail_status` (default 500).
- status=STATUS: every attempt answers that status. down_for=S: every request with this
  spec answers `fail_status` until S seconds after the first one was seen, then is healthy.
- retry_after=S: a `Retry-After: S` header on fail=/status=/down_for= answers;
  retry_after_date sends it as an HTTP date instead (S from now, 1 s when not given).
- drop=K aborts the connection after K content chunks (non-stream: before any answer);
  garbage=K writes one `data: }{garbage` event there; silence=S@K (alias stall=S@K) pauses.
- delay, tps, words: override the settings' first-byte delay, pace and answer length.
- fragment: each event written in 1-3 byte pieces; crlf / cr: line endings;
  multiline: JSON pretty-printed over several `data:` lines; noend: the stream ends (EOF)
  without its end marker (`[DONE]`, `message_stop`, `response.completed`).
- hang: never send headers. drip=P: send headers, then one byte every P seconds and
  never a newline, until the client goes away.
- tool / tools=M: when the request has `tools`, answer with 1 / M tool calls (the request's
  tools in order, cycling); text_then_tool: a text answer, then one tool call (or M).
  Without `tools` in the request these answer text, as a real model must.
- context_overflow / content_filter: a 400 in the provider's own words and codes.
  no_prefill: a request whose last message is from the assistant gets a 400.
- echo_key: a 400 whose message echoes the `Authorization` / `x-api-key` headers received.
- html: a 200 `text/html` page (a proxy's error page) instead of the answer.
- big=N: a non-stream answer padded to at least N bytes; gzip: the non-stream answer sent
  with `Content-Encoding: gzip` (with big=, a small body that expands hugely).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class FaultSpecError(ValueError):
    """The spec has directives the mock does not know, or malformed values."""


@dataclass(frozen=True)
class Faults:
    fail: int = 0  # the first N attempts per (spec, x-request-id) fail
    fail_status: int = 500
    retry_after: float | None = None  # Retry-After on fail=, status= and down_for= answers
    retry_after_date: bool = False  # ... as an HTTP date
    status: int | None = None  # always answer this error status
    down_for: float | None = None  # fail until this long after the spec's first request
    drop: int | None = None  # abort the connection after K content chunks
    garbage: int | None = None  # one `data: }{garbage` event after K content chunks
    silence: tuple[float, int] | None = None  # (seconds, after K content chunks)
    delay: float | None = None  # first-byte delay override
    tps: float | None = None  # tokens-per-second override
    words: int | None = None  # answer length override
    drip: float | None = None  # seconds between single bytes, forever
    fragment: bool = False  # every event written in 1-3 byte pieces
    newline: bytes = b"\n"  # `crlf` -> b"\r\n", `cr` -> b"\r"
    multiline: bool = False  # JSON pretty-printed, one `data:` line per JSON line
    hang: bool = False  # never send the response headers
    noend: bool = False  # no end marker before EOF
    tools: int = 0  # tool calls to answer with (`tool` = 1)
    text_then_tool: bool = False
    context_overflow: bool = False
    content_filter: bool = False
    no_prefill: bool = False
    echo_key: bool = False
    html: bool = False
    big: int | None = None  # pad a non-stream answer to at least this many bytes
    gzip: bool = False


_INTS = {"fail", "drop", "garbage", "words", "big"}
_STATUSES = {"status", "fail_status"}
_NUMBERS = {"retry_after", "delay", "tps", "down_for"}
_PAUSES = {"silence", "stall"}  # S@K
_FLAGS = {
    "fragment", "crlf", "cr", "multiline", "hang", "noend", "tool", "text_then_tool", "retry_after_date",
    "context_overflow", "content_filter", "no_prefill", "echo_key", "html", "gzip",
}  # fmt: skip


def fault_spec(header: str | None, model: Any) -> str:
    """The spec a request asks for: its `x-mock-fault` header plus its model's `+` suffix."""
    suffix = model.partition("+")[2] if isinstance(model, str) else ""
    return ",".join(part for part in (header, suffix) if part)


def _number(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError(raw)
    return value


def _int(raw: str, least: int = 0) -> int:
    value = int(raw)
    if value < least:
        raise ValueError(raw)
    return value


def parse_faults(spec: str) -> Faults:
    values: dict[str, Any] = {}
    bad: list[str] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, eq, raw = item.partition("=")
        try:
            if name in _FLAGS and not eq:
                values[name] = True
            elif name in _INTS and eq:
                values[name] = _int(raw)
            elif name == "tools" and eq:
                values[name] = _int(raw, least=1)
            elif name in _STATUSES and eq and 400 <= int(raw) <= 599:
                values[name] = int(raw)
            elif name in _NUMBERS and eq:
                values[name] = _number(raw)
            elif name == "drip" and eq and _number(raw) > 0:
                values[name] = _number(raw)
            elif name in _PAUSES and "@" in raw:
                seconds, _, after = raw.partition("@")
                values["silence"] = (_number(seconds), _int(after))
            else:
                bad.append(item)
        except ValueError:
            bad.append(item)
    if bad:
        raise FaultSpecError(f"unknown or malformed mock fault directive(s): {', '.join(bad)}")
    crlf, cr = values.pop("crlf", False), values.pop("cr", False)
    newline = b"\r\n" if crlf else b"\r" if cr else b"\n"
    if values.pop("tool", False):
        values.setdefault("tools", 1)
    if values.get("text_then_tool"):
        values.setdefault("tools", 1)
    return Faults(newline=newline, **values)
