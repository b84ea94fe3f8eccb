"""Reading a request body: bytes, JSON, and the checks every API route relies on.

Rules:
- The body's bytes are what goes upstream on a pass-through route, so the JSON must mean ONE
  thing: a duplicate key anywhere (`{"model": "cheap", "model": "dear"}`, read differently
  by different parsers) is a 400, as is JSON nested past what the parser allows.
- A body that fails to decode under its `Content-Encoding` is a 400, never a 500: the gateway
  decodes it itself (the app turns aiohttp's decoding off), so a gzip body cut short, even
  only in its trailer, or followed by anything but another gzip member, is refused (aiohttp
  checks the end of a deflate stream, not of a gzip one).
- Over `max_body_bytes` as sent, aiohttp raises 413 (`HTTPRequestEntityTooLarge`) itself; over
  it once decoded, `decode_body` does (a small compressed body can inflate a thousandfold).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestPayloadError

from .errors import BadRequest, BodyTooLarge


@dataclass(frozen=True, slots=True)
class Call:
    """A parsed API request: its bytes, its JSON, and what the gateway reads of it."""

    raw: bytes
    body: dict[str, Any]
    model: str
    stream: bool


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Duplicate(dup)
    return obj


def _no_constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


class _NotJSON(ValueError):
    pass


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8 without a byte order mark, no NaN/Infinity, no duplicate keys."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8 text") from None
    if text.startswith("\ufeff"):
        raise BadRequest("body starts with a byte order mark: send plain UTF-8 JSON") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Duplicate as exc:
        raise BadRequest(f"body has a duplicate key {str(exc)[:64]!r}") from None
    except RecursionError:
        raise BadRequest("body JSON is nested too deeply") from None
    except _NotJSON as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise BadRequest(f"body is not valid JSON: {exc.msg} ({where})") from None
    except ValueError:  # e.g. a number with thousands of digits
        raise BadRequest("body is not valid JSON: a value is out of range") from None


def dumps(value: Any) -> bytes:
    """JSON for an upstream request the gateway builds (translated, simple events)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:  # too deep, a lone surrogate, an integer past 64 bits
        raise BadRequest(f"body JSON cannot be sent on: {str(exc)[:120]}") from None


#: what `decode_body` decodes: gzip (`x-gzip` is its old name, RFC 9110), and deflate as zlib
#: data or raw (clients send both)
ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
#: gzip members one body may hold: a client sends one; each further one costs a copy of the
#: rest of the body, so many tiny members would make decoding quadratic
MAX_GZIP_MEMBERS = 4


def decode_body(data: bytes, encoding: str, limit: int) -> bytes:
    """The body's bytes under its `Content-Encoding` (one of ENCODINGS), at most `limit` bytes
    once decoded (else 413); a stream that is cut short or malformed is a 400."""
    if encoding in ("", "identity") or not data:
        return data
    if encoding == "x-gzip":
        encoding = "gzip"
    out: list[bytes] = []
    size = 0
    rest = data
    while rest:
        if len(out) == MAX_GZIP_MEMBERS:
            raise BadRequest(f"the request body has more than {MAX_GZIP_MEMBERS} gzip members")
        if encoding == "gzip":
            wbits = 16 + zlib.MAX_WBITS
        else:  # zlib data (RFC 1950, the standard's) starts with a CM of 8; else raw deflate
            wbits = zlib.MAX_WBITS if rest[0] & 0x0F == 8 else -zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(rest, limit - size + 1)
        except zlib.error:
            raise BadRequest(f"the request body is not valid {encoding} data") from None
        size += len(part)
        if size > limit:
            raise BodyTooLarge(f"request body is over the limit of {limit} bytes once decoded")
        if not inflater.eof:
            raise BadRequest(f"the request body's {encoding} data is cut short")
        out.append(part)
        rest = inflater.unused_data
        if encoding == "gzip" and rest.count(0) == len(rest):
            break  # zero padding after the last member (as gzip.decompress allows), no copy
        if encoding != "gzip" and rest:  # only gzip may hold several members
            raise BadRequest(f"the request body has bytes after its {encoding} data")
    return b"".join(out)


async def read_json(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    try:
        raw = await request.read()
    except (RequestPayloadError, BadHttpMessage) as exc:
        raise BadRequest(f"the request body could not be read ({type(exc).__name__})") from None
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding:
        raw = decode_body(raw, encoding, request.client_max_size)
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return raw, body


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("`model` is required and must be a non-empty string")
    return model


def stream_of(body: dict[str, Any]) -> bool:
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise BadRequest("`stream` must be a boolean")
    return body.get("stream") is True


async def read_chat(request: web.Request) -> Call:
    """A chat body (`/v1/chat/completions`, `/v1/messages`, `/api/chat/stream`)."""
    raw, body = await read_json(request)
    model = model_of(body)
    messages = body.get("messages")
    if messages is None:
        raise BadRequest("`messages` is required")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty array")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise BadRequest("each message must be an object with a string `role`")
    stream = stream_of(body)
    check_token_limits(body)
    return Call(raw, body, model, stream)


#: the answer-length fields the APIs take; no model answers with more than `MAX_TOKENS`
TOKEN_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
MAX_TOKENS = 2**31 - 1
#: the fields that ask for several answers to one prompt (`n` on chat and completions,
#: `best_of` on /v1/completions: it generates that many and returns `n`); the worst case is
#: that many answers of the answer-length each, so they are bounded: at most `MAX_CHOICES`
#: (OpenAI's own limit for `n`)
CHOICE_FIELDS = ("n", "best_of")
MAX_CHOICES = 128


def check_token_limits(body: dict[str, Any]) -> None:
    """An answer-length field, when given, is a positive integer of a sane size: a 400 here,
    not a reservation (or a spend budget's worst case) sized by a number no model reaches."""
    for key in TOKEN_LIMITS:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOKENS:
            raise BadRequest(f"`{key}` must be a positive integer no larger than {MAX_TOKENS}")
    for key in CHOICE_FIELDS:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CHOICES:
            raise BadRequest(f"`{key}` must be a positive integer no larger than {MAX_CHOICES}")
