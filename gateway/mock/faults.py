"""The mock upstream's fault spec: which misbehaviour a request asks for, parsed with no I/O.

A spec comes from the `x-mock-fault` header and/or the model name after a `+`
(`mock-1+fail=2,drop=3`); both are joined with a comma. Grammar:

    spec      = [directive *("," directive)]
    directive = "fail=" N | "fail_status=" STATUS | "retry_after=" S | "status=" STATUS
              | "drop=" K | "garbage=" K | "silence=" S "@" K
              | "delay=" S | "tps=" X | "words=" N
              | "fragment" | "crlf" | "cr" | "multiline" | "hang"

N and K are integers >= 0, S and X numbers >= 0, STATUS an HTTP error status (400-599).
K always counts content chunks already written (one word each).
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
    retry_after: float | None = None  # Retry-After on fail= and status= answers
    status: int | None = None  # always answer this error status
    drop: int | None = None  # abort the connection after K content chunks
    garbage: int | None = None  # one `data: }{garbage` event after K content chunks
    silence: tuple[float, int] | None = None  # (seconds, after K content chunks)
    delay: float | None = None  # first-byte delay override
    tps: float | None = None  # tokens-per-second override
    words: int | None = None  # answer length override
    fragment: bool = False  # every event written in 1-3 byte pieces
    newline: bytes = b"\n"  # `crlf` -> b"\r\n", `cr` -> b"\r"
    multiline: bool = False  # JSON pretty-printed, one `data:` line per JSON line
    hang: bool = False  # never send the response headers


_INTS = {"fail", "drop", "garbage", "words"}
_STATUSES = {"status", "fail_status"}
_NUMBERS = {"retry_after", "delay", "tps"}
_FLAGS = {"fragment", "crlf", "cr", "multiline", "hang"}


def fault_spec(header: str | None, model: Any) -> str:
    """The spec a request asks for: its `x-mock-fault` header plus its model's `+` suffix."""
    suffix = model.partition("+")[2] if isinstance(model, str) else ""
    return ",".join(part for part in (header, suffix) if part)


def _number(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError(raw)
    return value


def _int(raw: str) -> int:
    value = int(raw)
    if value < 0:
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
            elif name in _STATUSES and eq and 400 <= int(raw) <= 599:
                values[name] = int(raw)
            elif name in _NUMBERS and eq:
                values[name] = _number(raw)
            elif name == "silence" and "@" in raw:
                seconds, _, after = raw.partition("@")
                values[name] = (_number(seconds), _int(after))
            else:
                bad.append(item)
        except ValueError:
            bad.append(item)
    if bad:
        raise FaultSpecError(f"unknown or malformed mock fault directive(s): {', '.join(bad)}")
    crlf, cr = values.pop("crlf", False), values.pop("cr", False)
    newline = b"\r\n" if crlf else b"\r" if cr else b"\n"
    return Faults(newline=newline, **values)
