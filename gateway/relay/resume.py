"""Mid-stream resume: what the client has seen of a stream (`ClientView`) and the sink that
splices a continuation from another upstream into the same client stream (`Splice`); the
check that keeps a malformed upstream event from reaching the client is `guard.py`.

Rules:
- The text to continue is the text the CLIENT received, read back from the bytes written to
  it in its own dialect: exactly that is sent upstream as the trailing assistant message.
- The continuation adds text deltas and the ending only: no second role chunk or
  message_start, the client's ids and its open text block index, usage = every attempt's.
- Only a text answer is resumed: once a tool call reached the client, a cut is final.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..dialects import Dialect, Usage, UsageMeter
from ..dialects.spot import ClientSpot
from ..errors import UpstreamError
from ..shapes import ErrorShape
from ..sse import EventParser
from ..upstream import Opened
from ..upstream.continuation import NoContinuation as NoContinuation
from .guard import MALFORMED
from .sinks import TRUNCATED, Sink, Write


class ClientView:
    """What the client has received, read from the bytes written to it by its stream's
    `ClientSpot` (the client's dialect's, `Dialect.client_spot`, or the simple events')."""

    def __init__(self, spot: ClientSpot) -> None:
        self.spot = spot
        self.text: list[str] = []
        self._parser = EventParser()

    def watch(self, write: Write) -> Write:
        async def watched(data: bytes) -> None:
            self.feed(data)
            await write(data)
        return watched

    def feed(self, data: bytes) -> None:
        for event in self._parser.feed(data):
            if event.data.strip() == "[DONE]":
                self.spot.finished = True
                continue
            try:
                payload = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(payload, dict):
                text = self.spot.seen(event.event, payload)
                if text:
                    self.text.append(text)

    @property
    def streamed(self) -> str:
        return "".join(self.text)

    @property
    def between_events(self) -> bool:
        """The client's stream ends between two events (heartbeats may go out)."""
        return self._parser.between_events

    def resumable(self, sink: Sink) -> bool:
        return not (self.spot.tool or self.spot.finished or sink.failed)


class Splice(Sink):
    """A continuation's upstream events (`dialect`) -> the client's stream, as if the first
    attempt had gone on: text deltas, then the ending, in the client's dialect and ids."""

    def __init__(self, write: Write, shape: ErrorShape, view: ClientView, dialect: Dialect,
                 before: Usage, meter: UsageMeter) -> None:
        super().__init__(write, shape)
        self.view = view
        self.dialect = dialect
        self.before = before  # the earlier attempts' usage
        self.meter = meter  # this attempt's (observed before each `lines`)
        self.done = False
        self._stop: str | None = None
        self._parser = EventParser()
        self._streamed = [view.streamed]  # the client's text: what it had, then what this adds

    async def lines(self, complete: bytes) -> None:
        out: list[bytes] = []
        failure: str | None = None
        for event in self._parser.feed(complete):
            if self.done:
                break
            if self.dialect.is_final(event.event, event.data):
                out.append(self._ending())
                self.done = True
                break
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                failure = MALFORMED
                break
            if not isinstance(data, dict):
                continue
            message = self.dialect.stream_error(event.event, data)
            if message is not None:
                failure = f"upstream error: {self.mask.text(message)}"
                break
            self._note_stop(data)
            text = self.dialect.text_delta(event.event, data)
            if text:
                out.append(self._text(text))
        if out:
            await self.write(self.mask.events(b"".join(out)))
        if failure is not None:
            raise UpstreamError(failure)

    def end(self) -> bytes:
        if self.done:
            return b""
        if self._stop is not None:  # the continuation finished without its end marker
            self.done = True
            return self._ending()
        raise UpstreamError(TRUNCATED)

    def _note_stop(self, data: dict[str, Any]) -> None:
        reason = self.dialect.finish_reason(data)
        if reason is not None:
            self._stop = reason

    def _usage(self) -> Usage:
        now = self.meter.usage
        return Usage(self.before.prompt_tokens + now.prompt_tokens,
                     self.before.completion_tokens + now.completion_tokens, now.reported)

    def _text(self, text: str) -> bytes:
        self._streamed.append(text)
        return self.view.spot.more_text(text)

    def _ending(self) -> bytes:
        # The continuation's finish reason goes in the client's words (the dialects' one table).
        return self.view.spot.ending(self._stop, self.dialect, self._usage(), "".join(self._streamed))


class Continuation(Protocol):
    """What the relay asks to continue a cut stream; the handler implements it and hands it
    down as a value (the relay never reaches back into the handler otherwise)."""

    async def reopen(self, cut: Opened, text: str, failure: str) -> Opened:
        """The continuation of `cut` (which the provider failed: `failure`, its breaker's
        verdict) asked with the streamed `text` as a prefill; raises `NoContinuation` (no
        continuation target is left) or `UpstreamError` (none answered)."""
        ...

    def count(self, result: str) -> None:
        """One `gateway_midstream_recoveries_total` result: ok, failed or unavailable."""
        ...

    def meters(self, opened: Opened) -> Dialect:
        """The dialect a continuation's events are read (and metered) in: the route's, for
        the upstream that answered (e.g. Responses events from an OpenAI target)."""
        ...


@dataclass(frozen=True, slots=True)
class Resume:
    """What `stream_answer` needs to continue a cut stream: the view of the client's stream
    and the `Continuation` to ask."""

    view: ClientView
    continuation: Continuation
