"""What every upstream dialect provides (URL, key header, usage, text deltas, end marker),
and the per-stream usage meter built on it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import hdrs

from ..config import UpstreamSpec
from ..markers import Marker, lines_holding


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
    def text_delta(self, event: str, data: dict[str, Any]) -> str | None:
        """The text a stream event adds to the answer, if any."""

    @abstractmethod
    def is_final(self, event: str, data: str) -> bool:
        """This event ends the answer."""

    @abstractmethod
    def stream_error(self, event: str, data: dict[str, Any]) -> str | None:
        """The message of an error event the upstream sent mid-stream, if this is one."""

    @abstractmethod
    def simple_request(self, body: dict[str, Any]) -> dict[str, Any]:
        """The upstream request body for a simple-event (browser) request."""


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

    __slots__ = ("dialect", "usage", "_data_lines")

    def __init__(self, dialect: Dialect, prompt_estimate: int) -> None:
        self.dialect = dialect
        self.usage = Usage(prompt_tokens=prompt_estimate)
        self._data_lines = 0

    def observe(self, complete: bytes) -> None:
        # Lines that START with `data:`: the model's text may hold "data:" inside a JSON string.
        self._data_lines += (complete.startswith(b"data:") + complete.count(b"\ndata:")
                             - complete.startswith(b"data: [DONE]") - complete.count(b"\ndata: [DONE]"))
        if b'"usage"' not in complete:
            if not self.usage.reported:
                self.usage.completion_tokens = self._data_lines
            return
        for start, end in lines_holding(complete, b'"usage"'):  # not a loop over every line
            if complete.startswith(b"data:", start):
                try:
                    data = orjson.loads(complete[start + 5:end])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(data, dict):
                    self.dialect.update_usage(self.usage, data)
        if not self.usage.reported:
            self.usage.completion_tokens = self._data_lines
