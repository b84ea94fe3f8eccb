"""What every dialect provides, and the per-stream usage meter built on it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import orjson

from ..config import UpstreamSpec
from ..errors import GatewayError

#: Client headers never forwarded upstream: hop-by-hop (RFC 9110 7.6.1), the client's own
#: credentials, and what aiohttp sets itself.
DROPPED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "authorization", "x-api-key",
    "cookie", "accept-encoding", "content-encoding", "openai-organization", "openai-project", "x-request-id",
})


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reported: bool = False  # the upstream said so (else: our estimate)

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Dialect(ABC):
    name: str
    path: str  # appended to the upstream's base_url

    def url(self, upstream: UpstreamSpec) -> str:
        return upstream.base_url.rstrip("/") + self.path

    @abstractmethod
    def upstream_headers(self, upstream: UpstreamSpec, client: dict[str, str]) -> dict[str, str]:
        """Headers for the upstream request: the upstream's key in this dialect's header."""

    @abstractmethod
    def error_body(self, exc: GatewayError) -> dict[str, Any]:
        """The JSON error body of this dialect."""

    @abstractmethod
    def error_event(self, exc: GatewayError) -> bytes:
        """One SSE error event in this dialect, for failures after the first byte."""

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

    def forwarded(self, client: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in client.items() if k.lower() not in DROPPED_HEADERS}


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """A cheap upper-ish estimate (~4 bytes a token) used only to reserve; settled later."""
    size = len(orjson.dumps(body.get("messages", []))) + len(str(body.get("system", "")))
    return max(1, size // 4)


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
        self._data_lines += complete.count(b"data:") - complete.count(b"data: [DONE]")
        if b'"usage"' not in complete:
            if not self.usage.reported:
                self.usage.completion_tokens = self._data_lines
            return
        for line in complete.splitlines():
            if line.startswith(b"data:") and b'"usage"' in line:
                try:
                    data = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(data, dict):
                    self.dialect.update_usage(self.usage, data)
        if not self.usage.reported:
            self.usage.completion_tokens = self._data_lines
