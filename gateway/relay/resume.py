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

from ..codecs.common import sse
from ..dialects import DIALECTS, Dialect, Usage, UsageMeter
from ..errors import UpstreamError
from ..shapes import ErrorShape
from ..sse import EventParser
from ..upstream import Opened
from ..upstream.continuation import NoContinuation as NoContinuation
from .guard import MALFORMED
from .resume_apis import (
    ResponsesState,
    completions_ending,
    completions_text,
    responses_ending,
    responses_text,
    see_completions,
    see_responses,
)
from .resume_apis import with_prefill as with_prefill
from .sinks import TRUNCATED, Sink, Write


class ClientView:
    """What the client has received, read from the bytes written to it. `client` is
    "openai", "anthropic", "simple" (the route's dialect), "responses" or "completions"
    (the API's own shapes, read in `resume_apis.py`)."""

    def __init__(self, client: str, include_usage: bool) -> None:
        self.client = client
        #: the client's dialect, which reads what was written to it (None: simple events)
        self.dialect: Dialect | None = DIALECTS.get(client)
        self.include_usage = include_usage
        self.text: list[str] = []
        self.head: dict[str, Any] = {}  # OpenAI: the first chunk's id, created, model
        self.block: int | None = None  # Anthropic: the open text block's index
        self.next_block = 0
        self.tool = False  # a tool call reached the client: not resumable
        self.finished = False  # the client has the answer's ending
        self.responses = ResponsesState()  # Responses: its numbering, response and item
        self._parser = EventParser()

    def watch(self, write: Write) -> Write:
        async def watched(data: bytes) -> None:
            self.feed(data)
            await write(data)
        return watched

    def feed(self, data: bytes) -> None:
        for event in self._parser.feed(data):
            if event.data.strip() == "[DONE]":
                self.finished = True
                continue
            try:
                payload = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(payload, dict):
                self._see(event.event, payload)

    def _see(self, event: str, data: dict[str, Any]) -> None:
        if self.client == "responses":
            text, tool, ended = see_responses(self.responses, event, data)
            self.tool, self.finished = self.tool or tool, self.finished or ended
            if text:
                self.text.append(text)
            return
        if self.client == "completions":
            text, ended = see_completions(self.head, data)
            self.finished = self.finished or ended or "error" in data
            if text:
                self.text.append(text)
            return
        if self.client == "simple":
            if event == "message" and isinstance(data.get("content"), str):
                self.text.append(data["content"])
            elif event in ("done", "error"):
                self.finished = True
            return
        dialect = self.dialect
        assert dialect is not None
        text = dialect.text_delta(event, data)  # what the client's dialect reads as text
        if text:
            self.text.append(text)
        if (dialect.finish_reason(data) is not None or dialect.stream_error(event, data) is not None
                or dialect.ends_answer(event, data)):
            self.finished = True
        # Where a continuation goes on, in the client's own ids, and whether a tool call
        # reached it (then a cut is final): the client's dialect notes it.
        dialect.noted(self, event, data)

    @property
    def streamed(self) -> str:
        return "".join(self.text)

    @property
    def between_events(self) -> bool:
        """The client's stream ends between two events (heartbeats may go out)."""
        return self._parser.between_events

    def resumable(self, sink: Sink) -> bool:
        return not (self.tool or self.finished or sink.failed)


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
        view = self.view
        self._streamed.append(text)
        if view.client == "responses":
            return responses_text(view.responses, text)
        if view.client == "completions":
            return completions_text(view.head, text)
        if view.dialect is None:  # simple events
            return sse({"content": text, "done": False}, "message")
        return view.dialect.more_text(view, text)

    def _ending(self) -> bytes:
        view = self.view
        usage = self._usage()
        if view.client == "responses":
            return responses_ending(view.responses, "".join(self._streamed), usage)
        if view.client == "completions":
            return completions_ending(view.head, self._stop or "stop", usage, view.include_usage)
        if view.dialect is None:  # simple events
            return sse({}, "done")
        # The continuation's finish reason in the client's words (the dialects' one table).
        stop = self._stop or self.dialect.default_finish
        reason = view.dialect.finish_in(stop, self.dialect)
        return view.dialect.ending(view, reason, usage, view.include_usage)


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
