"""What every dialect provides: its URL and key header, its model list, usage, text deltas,
finish reasons, end and error markers, its stream's error event and "prompt too long"; and the
per-stream usage meter built on it. The relay, resume and the simple events read streams
through these methods only: one reader per dialect. A mid-stream resume asks the dialect for
its prefill request and its `ClientSpot` (`spot.py`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from aiohttp import hdrs

from ..config import UpstreamSpec
from ..markers import Marker, lines_holding

if TYPE_CHECKING:
    from .spot import ClientSpot


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reported: bool = False  # the upstream said so (else: our estimate)
    # Of `prompt_tokens` (always the whole prompt): read from / written to a prompt cache.
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def copy(self) -> Usage:
        """`dataclasses.replace(self)`, without its walk over the fields (once a stream)."""
        return Usage(self.prompt_tokens, self.completion_tokens, self.reported,
                     self.cache_read_tokens, self.cache_write_tokens)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens a stream or body reported, in Anthropic's terms: `input_tokens` excludes the
    prompt tokens read from (`cache_read_tokens`) or written to (`cache_write_tokens`) the cache.
    OpenAI's `prompt_tokens` includes its `cached_tokens`, so it is split on the way in."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reported: bool = False  # the upstream said so (else: nothing seen yet)

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def openai(self) -> dict[str, Any]:
        """OpenAI's `usage` object."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.prompt_tokens + self.output_tokens,
        }
        if self.cache_read_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cache_read_tokens}
        return usage

    def anthropic(self) -> dict[str, Any]:
        """Anthropic's `usage` object (cache fields only when a cache was touched)."""
        usage: dict[str, Any] = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        if self.cache_read_tokens:
            usage["cache_read_input_tokens"] = self.cache_read_tokens
        if self.cache_write_tokens:
            usage["cache_creation_input_tokens"] = self.cache_write_tokens
        return usage


def count(value: object) -> int:
    """A token count as sent, or 0 for anything that is not a non-negative int."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class Dialect(ABC):
    name: str
    path: str  # appended to the upstream's base_url

    #: the header the provider key goes in when the upstream's `auth_header` names none
    auth_header: str

    def url(self, upstream: UpstreamSpec, path: str = "") -> str:
        """`path`: another API of the upstream's (e.g. "/embeddings"), else chat's; the
        upstream's `query` is added to every URL."""
        url = self.api_root(upstream) + (path or self.path)
        return f"{url}?{urlencode(upstream.query)}" if upstream.query else url

    def api_root(self, upstream: UpstreamSpec) -> str:
        """The URL the API paths are appended to."""
        return upstream.base_url.rstrip("/")

    def auth_headers(self, key: str, header: str | None = None) -> dict[str, str]:
        """The upstream's key, in `header` (the upstream's `auth_header`) or this dialect's."""
        name = header or self.auth_header
        return {hdrs.AUTHORIZATION: f"Bearer {key}"} if name == "authorization" else {name: key}

    def models_url(self, upstream: UpstreamSpec, after: str | None = None) -> str:
        """The URL of the upstream's model list (`after`: the next page's cursor)."""
        return self.url(upstream, "/models")

    def parse_models(self, body: object) -> tuple[list[str], str | None]:
        """The model names one page of the list gives, and the next page's cursor (None: it
        was the last). OpenAI's shape, one page: `{"object": "list", "data": [{"id"}, ...]}`;
        Gemini's OpenAI endpoint names them `models/gemini-...`, which chat takes bare."""
        return [name.removeprefix("models/") for name in model_ids(body)], None

    #: headers sent upstream unless the client sent its own
    default_headers: dict[str, str] = {}
    #: the lines that end a stream, and that start the upstream's own error event (matched on
    #: line starts only, see `gateway.markers`)
    end_markers: tuple[Marker, ...]
    error_markers: tuple[Marker, ...]
    #: the end marker the gateway writes itself after a complete answer that came without it,
    #: and the same as the parsed event a codec is fed (event, data)
    end_bytes: bytes
    end_event: tuple[str, str]

    @abstractmethod
    def usage_from_body(self, body: dict[str, Any]) -> Usage | None:
        """Usage from a non-stream response body, or a stream event's JSON."""

    @abstractmethod
    def update_usage(self, usage: Usage, data: dict[str, Any]) -> None:
        """Fold one stream event's JSON into `usage` (only called when it mentions usage)."""

    @abstractmethod
    def token_usage(self, before: TokenUsage, data: dict[str, Any]) -> TokenUsage:
        """Fold one stream event's usage into `before` (the codecs' `TokenUsage`, split by
        cache; the meter's `Usage` is `update_usage`'s)."""

    @abstractmethod
    def text_delta(self, event: str, data: dict[str, Any]) -> str | None:
        """The text a stream event adds to the answer, if any."""

    @abstractmethod
    def is_final(self, event: str, data: str) -> bool:
        """This event (as sent, before any JSON is parsed) ends the answer."""

    def ends_answer(self, event: str, data: dict[str, Any]) -> bool:
        """This parsed event ends the answer (a dialect whose end is JSON says so here too)."""
        return False

    @abstractmethod
    def stream_error(self, event: str, data: dict[str, Any]) -> str | None:
        """The message of an error event the upstream sent mid-stream, if this is one."""

    @abstractmethod
    def finish_reason(self, data: dict[str, Any]) -> str | None:
        """The finish (stop) reason a stream event carries, in this dialect's words."""

    #: finish reasons in OpenAI's words (the neutral ones) -> this dialect's, and back; a
    #: reason a table lacks is `default_finish` / "stop"
    finish_from_openai: Mapping[str, str] = MappingProxyType({})
    finish_to_openai: Mapping[str, str] = MappingProxyType({})
    default_finish = "stop"

    def finish_in(self, reason: str, source: Dialect) -> str:
        """`source`'s finish reason `reason`, in this dialect's words."""
        if source is self:
            return reason
        neutral = source.finish_to_openai.get(reason, "stop") if source.finish_to_openai else reason
        if not self.finish_from_openai:
            return neutral
        return self.finish_from_openai.get(neutral, self.default_finish)

    def prompt_too_long(self, error: dict[str, Any]) -> bool:
        """An error body's `error` object says the prompt does not fit the model."""
        return False

    # A mid-stream resume: how a continuation is asked of an upstream of this dialect, and
    # how it is written into a client's stream of this dialect (`spot.py`).

    @abstractmethod
    def prefill(self, body: dict[str, Any], text: str) -> None:
        """Make `body`, a request of this dialect, ask to go on from `text` (the answer so far)."""

    def with_prefill(self, body: bytes, text: str) -> bytes:
        """A continuation's request: `body` (this dialect's), asking to go on from `text`."""
        data = orjson.loads(body)
        if text:
            self.prefill(data, text)
        return orjson.dumps(data)

    def client_spot(self, include_usage: bool) -> ClientSpot:
        """A fresh reader-writer of a client's stream of this dialect, for a mid-stream resume."""
        raise NotImplementedError(f"a {self.name} client's stream is not resumed")

    @abstractmethod
    def simple_request(self, body: dict[str, Any]) -> dict[str, Any]:
        """The upstream request body for a simple-event (browser) request."""


def sse(data: object, event: str | None = None) -> bytes:
    """One SSE event: optional `event:` line, one `data:` line (orjson never writes a newline)."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def choice_zero(choices: object) -> dict[str, Any] | None:
    """Choice 0 of a chunk or body (`n` > 1 has no Anthropic or simple counterpart).
    A choice without an `index` counts as 0, as some OpenAI-compatible servers leave it out."""
    for choice in choices if isinstance(choices, list) else []:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


def error_message(error: object, default: str) -> str:
    """The `message` of an error object of either dialect, or `default`."""
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        return str(error["message"])
    if isinstance(error, str) and error:
        return error  # some OpenAI-compatible servers send {"error": "text"}
    return default


def model_ids(body: object) -> list[str]:
    """The `id` of every entry of a model list's `data`; ValueError when it is no list."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ValueError("the model list has no `data` array")
    return [entry["id"] for entry in data
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]]


class UsageMeter:
    """Counts a stream's tokens from the bytes the relay forwards.

    Completion tokens are estimated as one per `data:` line (but OpenAI's `[DONE]`; role and
    finish chunks do count, so a short answer is over-estimated by two) until the upstream reports
    usage (OpenAI's last chunk with include_usage, Anthropic's message_start/message_delta);
    a stream cut short is charged on that estimate. JSON is parsed only for lines that
    mention usage, so the hot path stays a substring search.
    """

    __slots__ = ("dialect", "usage", "_data_lines", "seen", "usage_at")

    def __init__(self, dialect: Dialect, prompt_estimate: int) -> None:
        self.dialect = dialect
        self.usage = Usage(prompt_tokens=prompt_estimate)
        self._data_lines = 0
        #: the last read observed, and where `"usage"` is in it (-1: nowhere), for a sink
        #: that looks for it too (`relay.hidden_usage`): one search a read, not two
        self.seen = b""
        self.usage_at = -1

    def observe(self, complete: bytes, events: int = -1) -> None:
        """`events`: how many `data:` lines `complete` has when the caller knows every line of
        it is a `data:` line or blank (`sse.data_events`), else -1."""
        # Lines that START with `data:`: the model's text may hold "data:" inside a JSON string.
        if events == 1:  # one line: no `\ndata:` in it; `[DONE]` only after `data: ` (an index
            # test first: most lines are not it, and `startswith` parses its arguments)
            self._data_lines += 1 if complete[6] != 91 else 1 - complete.startswith(b"data: [DONE]")
        elif events > 1:
            self._data_lines += (events - complete.startswith(b"data: [DONE]")
                                 - complete.count(b"\ndata: [DONE]"))
        else:
            self._data_lines += (complete.startswith(b"data:") + complete.count(b"\ndata:")
                                 - complete.startswith(b"data: [DONE]") - complete.count(b"\ndata: [DONE]"))
        first = complete.find(b'"usage"')  # `find`, not `in` (`gateway.markers`), and searched once
        self.seen, self.usage_at = complete, first
        if first < 0:
            if not self.usage.reported:
                self.usage.completion_tokens = self._data_lines
            return
        for start, end in lines_holding(complete, b'"usage"', first):  # not a loop over every line
            if complete.startswith(b"data:", start):
                try:
                    data = orjson.loads(complete[start + 5:end])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(data, dict):
                    self.dialect.update_usage(self.usage, data)
        if not self.usage.reported:
            self.usage.completion_tokens = self._data_lines
