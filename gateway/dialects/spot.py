"""Where a client's stream stands, for a mid-stream resume to go on in it: a `ClientSpot` reads
each event the client received (its text; whether the answer ended or a tool call went out)
and writes a continuation's text and ending into that stream, in the client's own ids. Each
dialect a client speaks has its own (`Dialect.client_spot`); `relay/resume.py` only asks it.

Rules:
- A spot is read through its dialect's one reader (`text_delta`, `finish_reason`,
  `stream_error`, `ends_answer`); `noted` keeps what the dialect's writer needs besides.
- A tool call that reached the client makes the stream not resumable (`tool`), as does an
  answer the client already has the end of (`finished`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from .base import Dialect, Usage


class ClientSpot(ABC):
    """What a continuation needs of a client's stream, noted as its events go by."""

    def __init__(self, include_usage: bool = False) -> None:
        self.include_usage = include_usage  # the client asked for a usage chunk
        self.tool = False  # a tool call reached the client: not resumable
        self.finished = False  # the client has the answer's ending
        #: the last `sequence_number` the client has, for a shape whose events are numbered
        self.last_number = -1

    @abstractmethod
    def seen(self, event: str, data: dict[str, Any]) -> str | None:
        """Note one event the client received (its JSON); the answer text it carries."""

    @abstractmethod
    def more_text(self, text: str) -> bytes:
        """A continuation's text, as the next event(s) of the client's stream."""

    @abstractmethod
    def ending(self, stop: str | None, source: Dialect, usage: Usage, text: str) -> bytes:
        """The client's stream's ending after a continuation read in `source` that finished
        with `stop` (its words; None: it said none), `usage` every attempt's and `text` the
        whole answer's text the client now has."""


class DialectSpot(ClientSpot):
    """A client stream of `dialect`, read through that dialect's readers."""

    def __init__(self, dialect: Dialect, include_usage: bool = False) -> None:
        super().__init__(include_usage)
        self.dialect = dialect

    def seen(self, event: str, data: dict[str, Any]) -> str | None:
        dialect = self.dialect
        if (dialect.finish_reason(data) is not None or dialect.stream_error(event, data) is not None
                or dialect.ends_answer(event, data)):
            self.finished = True
        self.noted(event, data)
        return dialect.text_delta(event, data)

    def noted(self, event: str, data: dict[str, Any]) -> None:
        """Keep what this dialect's writer needs of an event the client received."""

    def reason(self, stop: str | None, source: Dialect) -> str:
        """A continuation's finish reason in the client's words (the dialects' one table)."""
        return self.dialect.finish_in(stop or source.default_finish, source)
