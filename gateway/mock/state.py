"""What the mock remembers: its settings, and the requests and streams it saw (bounded).

Tests read `MockState` to see what reached the upstream, what was written and when,
and whether the peer went away.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MAX_RECORDS = 10_000


@dataclass(frozen=True)
class MockSettings:
    first_byte_delay: float = 0.0  # seconds before the first body byte (headers go at once)
    tokens_per_second: float = 0.0  # pacing of content chunks; 0 = as fast as possible
    words: int = 20  # completion length in words (= content chunks = completion tokens)
    api_key: str | None = None  # when set, any other key gets 401
    #: what GET /v1/models lists (Anthropic's shape is paginated: `limit`, `after_id`)
    models: tuple[str, ...] = ("mock-1",)
    models_page: int = 1000  # the largest page the Anthropic-shaped list gives
    # The state keeps only the last `max_records` requests and streams (and as many fail=/
    # down_for= counters), so a long `mock-upstream` run holds bounded memory.
    max_records: int = MAX_RECORDS


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any] | None  # None when not a JSON object
    fault: str
    request_id: str | None
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamRecord:
    path: str
    fault: str
    request_id: str | None
    sent_at: list[float] = field(default_factory=list)  # monotonic, after each event's drain
    chunks_sent: int = 0  # SSE events fully written (== len(sent_at)); bytes under `drip`
    completed: bool = False
    client_closed: bool = False
    closed_at: float | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)


def _trim(records: list[Any] | dict[Any, Any], limit: int) -> None:
    """Drop the oldest entries beyond `limit` (dicts keep insertion order)."""
    excess = len(records) - limit
    if excess <= 0:
        return
    if isinstance(records, list):
        del records[:excess]
    else:
        for key in list(itertools.islice(records, excess)):
            del records[key]


@dataclass
class MockState:
    requests: list[RecordedRequest] = field(default_factory=list)
    streams: list[StreamRecord] = field(default_factory=list)
    # fail=N bookkeeping: attempts seen per (fault spec, x-request-id)
    attempts: dict[tuple[str, str | None], int] = field(default_factory=dict)
    # down_for=S bookkeeping: when (monotonic) each spec was first seen
    first_seen: dict[str, float] = field(default_factory=dict)
    served: int = 0  # requests ever seen (numbers answer ids; `requests` is bounded)
    #: GET /v1/models requests (kept apart: the gateway asks in the background)
    model_lists: list[RecordedRequest] = field(default_factory=list)
    max_records: int = MAX_RECORDS

    def record_request(self, record: RecordedRequest) -> int:
        self.served += 1
        self.requests.append(record)
        _trim(self.requests, self.max_records)
        return self.served

    def record_model_list(self, record: RecordedRequest) -> None:
        self.model_lists.append(record)
        _trim(self.model_lists, self.max_records)

    def record_stream(self, record: StreamRecord) -> None:
        self.streams.append(record)
        _trim(self.streams, self.max_records)

    def attempt(self, spec: str, request_id: str | None) -> int:
        """Count one more attempt of (spec, request id); returns its number from 1."""
        key = (spec, request_id)
        self.attempts[key] = attempt = self.attempts.pop(key, 0) + 1  # re-inserted: newest
        _trim(self.attempts, self.max_records)
        return attempt

    def seen_since(self, spec: str, now: float) -> float:
        """When a request with this spec was first seen (now, if this is the first)."""
        since = self.first_seen.setdefault(spec, now)
        _trim(self.first_seen, self.max_records)
        return since

    def reset(self) -> None:
        self.requests.clear()
        self.model_lists.clear()
        self.streams.clear()
        self.attempts.clear()
        self.first_seen.clear()

    def stats(self) -> dict[str, Any]:
        streams = [
            {
                "path": s.path,
                "fault": s.fault,
                "request_id": s.request_id,
                "chunks_sent": s.chunks_sent,
                "completed": s.completed,
                "client_closed": s.client_closed,
                "ended": s.ended.is_set(),
            }
            for s in self.streams
        ]
        return {"requests": len(self.requests), "served": self.served, "streams": streams}


MOCK_STATE = web.AppKey("mock_state", MockState)
MOCK_SETTINGS = web.AppKey("mock_settings", MockSettings)
