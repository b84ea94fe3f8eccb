"""Masking of credentials in what an upstream says before it goes to a client or a log: an
error body, an error event mid-stream (passed through or translated), an error message.

Rules (as OpenAI words its own "Incorrect API key provided: sk-abc...wxyz"):
- what looks like a provider key (`sk-...`, `sk-ant-...`), a `Bearer <token>`, an
  `x-api-key: <token>` and the upstream's own key value are masked wherever they appear;
- in a stream's ordinary events only the upstream's own key value is (`sk-` in model text
  about code is text): `StreamMask`;
- a masked key keeps its well-known prefix (`sk-`, `sk-ant-`), 3 more characters and its
  last 4 (`sk-abc...wxyz`); a key too short for that to hide most of it becomes `***`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Key-ish tokens: the prefix, then the characters providers use in keys.
_KEY = re.compile(rb"(sk-ant-|sk-)([A-Za-z0-9_\-]+)")
_BEARER = re.compile(rb"(Bearer\s+)([A-Za-z0-9._~+/=\-]+)", re.IGNORECASE)
_X_API_KEY = re.compile(rb"""(x-api-key\\?["']?\s*[:=]\s*\\?["']?\s*)([A-Za-z0-9._~+/=\-]+)""", re.IGNORECASE)
#: the shortest secret part that shows 3 + 4 of its characters (the rest, >= 9, stays hidden)
_SHOWN_FROM = 16


def mask_token(prefix: bytes, secret: bytes) -> bytes:
    if len(secret) < _SHOWN_FROM:
        return prefix + b"***"
    return prefix + secret[:3] + b"..." + secret[-4:]


def mask_secrets(body: bytes, secrets: Iterable[str] = ()) -> bytes:
    """`body` with every key-looking token and each of `secrets` masked."""
    body = _BEARER.sub(lambda m: _masked_bearer(m.group(1), m.group(2)), body)
    body = _X_API_KEY.sub(lambda m: _masked_bearer(m.group(1), m.group(2)), body)
    body = _KEY.sub(lambda m: mask_token(m.group(1), m.group(2)), body)
    for secret in secrets:  # a key of no known shape (a local server's, a proxy's)
        raw = secret.encode()
        if raw:
            body = body.replace(raw, mask_token(b"", raw))
    return body


def _masked_bearer(prefix: bytes, token: bytes) -> bytes:
    if _KEY.fullmatch(token):  # `Bearer sk-...`: left to the key rule, which keeps its prefix
        return prefix + token
    return prefix + mask_token(b"", token)


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`mask_secrets` for a message (an error event's, a log field's)."""
    return mask_secrets(text.encode(), secrets).decode(errors="replace")


class StreamMask:
    """An upstream's key(s) out of the stream it sends: `events(complete)` for ordinary events
    (only the key values: one substring search a read, usually nothing to do), `errors(data)`
    for what belongs to an error event (every key-looking token too), `text(message)`."""

    __slots__ = ("secrets", "_raw")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(s for s in secrets if s)
        self._raw = tuple(s.encode() for s in self.secrets)

    def events(self, complete: bytes) -> bytes:
        for raw in self._raw:
            if complete.partition(raw)[1]:  # not `in`, nor `find`: see `gateway.markers`
                return mask_secrets(complete, self.secrets)
        return complete

    def errors(self, data: bytes) -> bytes:
        return mask_secrets(data, self.secrets)

    def text(self, message: str) -> str:
        return mask_text(message, self.secrets)


NO_MASK = StreamMask()
