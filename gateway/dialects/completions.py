"""OpenAI's legacy completions API as a dialect: OpenAI's in everything (key, usage, `[DONE]`,
errors, `finish_reason`) but a chunk's text, which is `choices[0].text` (read when a stream
of `/v1/completions` is continued mid-stream). Only `/v1/completions` speaks it."""

from __future__ import annotations

from typing import Any

from .base import choice_zero
from .openai import OpenAIDialect


class CompletionsDialect(OpenAIDialect):
    # `name` stays "openai": the upstreams that serve completions are OpenAI-dialect ones.

    def text_delta(self, event: str, data: dict[str, Any]) -> str | None:
        choice = choice_zero(data.get("choices"))
        text = choice.get("text") if choice is not None else None
        return text if isinstance(text, str) and text else None


COMPLETIONS = CompletionsDialect()
