"""Exact usage from OpenAI-dialect streams (no I/O): the gateway always asks for it, and hides
the answer to a question the client did not ask.

Rules:
- A stream toward an OpenAI-dialect upstream (chat completions, completions) carries
  `stream_options.include_usage: true`, whatever the client sent: limits, budgets, metrics
  and the log line then settle on the provider's count, not an estimate.
- When the client did not ask for it (no `include_usage: true`), the usage-only last chunk
  (a `data:` chunk whose `choices` is empty and that has `usage`) is not forwarded: the only
  change to the pass-through bytes. The meter still reads it (it sees the upstream's bytes).
- Only lines that mention `"usage"` are parsed; every other byte passes as it is.
- The chunk is recognised on its own `data:` line (as every OpenAI-compatible provider sends
  it); one split over several `data:` lines is forwarded as it is, since hiding it would mean
  holding lines back until the event's end (zero buffering).
"""

from __future__ import annotations

from typing import Any

import orjson

from .markers import after_line_end, lines_holding

_USAGE = b'"usage"'


def client_asked(body: dict[str, Any]) -> bool:
    """The client asked for the usage chunk itself (`stream_options.include_usage: true`)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def asking_usage(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with `stream_options.include_usage: true` (its other stream options kept)."""
    options = body.get("stream_options")
    kept = options if isinstance(options, dict) else {}
    return {**body, "stream_options": {**kept, "include_usage": True}}


def is_usage_only(line: bytes) -> bool:
    """`data: {...}` with `choices: []` and a `usage` object: the chunk include_usage adds."""
    if not line.startswith(b"data:") or line.find(_USAGE) < 0:  # `find`: see `gateway.markers`
        return False
    try:
        data = orjson.loads(line[5:])
    except orjson.JSONDecodeError:
        return False
    return (isinstance(data, dict) and data.get("choices") == [] and isinstance(data.get("usage"), dict))


def without_usage_only(complete: bytes, after_dropped: bool = False,
                       first: int | None = None) -> tuple[bytes, bool]:
    """`complete` (whole lines, any ending) minus each usage-only `data:` line and the blank
    line that ends its event. `after_dropped`: the previous read ended right after a dropped
    line (its blank line is this read's first). Returns (what to forward, whether this read
    ends right after a dropped line). Only the lines that hold `"usage"` are looked at.
    `first`: where `"usage"` is in `complete` (-1: nowhere), when the caller knows it."""
    if not complete:
        return complete, after_dropped
    if after_dropped and complete[:1] in (b"\r", b"\n"):
        complete = complete[after_line_end(complete, 0):]  # the dropped event's terminator
        first = None
    if first is None:
        first = complete.find(_USAGE)  # `find`, not `in` (`gateway.markers`), and searched once
    if first < 0:
        return complete, False
    kept: list[bytes] = []
    done = 0  # what is kept or dropped so far
    dropping = False
    for start, end in lines_holding(complete, _USAGE, first):
        if start < done or not is_usage_only(complete[start:end]):
            continue
        stop = after_line_end(complete, end)
        dropping = stop >= len(complete)
        if not dropping and complete[stop:stop + 1] in (b"\r", b"\n"):
            stop = after_line_end(complete, stop)  # the blank line that ends its event
        kept.append(complete[done:start])
        done = stop
    if not done:
        return complete, False
    kept.append(complete[done:])
    return b"".join(kept), dropping
