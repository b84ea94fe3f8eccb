"""OpenAI's legacy completions API as a dialect: OpenAI's in everything (key, usage, `[DONE]`,
errors, `finish_reason`) but a chunk's text, which is `choices[0].text` (read when a stream
of `/v1/completions` is continued mid-stream), its prefill (the prompt with the text after it)
and how a continuation is written into its client's stream (`CompletionsSpot`). Only
`/v1/completions` speaks it."""

from __future__ import annotations

from typing import Any

from .base import DONE, Dialect, Usage, choice_zero, sse
from .openai import OpenAIDialect, OpenAISpot
from .spot import ClientSpot


class CompletionsDialect(OpenAIDialect):
    # `name` stays "openai": the upstreams that serve completions are OpenAI-dialect ones.

    def text_delta(self, event: str, data: dict[str, Any]) -> str | None:
        choice = choice_zero(data.get("choices"))
        text = choice.get("text") if choice is not None else None
        return text if isinstance(text, str) and text else None

    def prefill(self, body: dict[str, Any], text: str) -> None:
        # The prompt with the text after it (a list of token ids is left as it is).
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            body["prompt"] = prompt + text
        elif isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            body["prompt"] = [prompt[0] + text]

    def client_spot(self, include_usage: bool) -> ClientSpot:
        return CompletionsSpot(self, include_usage)


class CompletionsSpot(OpenAISpot):
    """A `/v1/completions` client's stream: text chunks with the first chunk's id, created and
    model; the ending is a finish chunk (the usage chunk with include_usage), then `[DONE]`."""

    def more_text(self, text: str) -> bytes:
        return sse({**self.head, "object": "text_completion",
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": None}]})

    def ending(self, stop: str | None, source: Dialect, usage: Usage, text: str) -> bytes:
        out = sse({**self.head, "object": "text_completion", "choices": [
            {"index": 0, "text": "", "logprobs": None, "finish_reason": self.reason(stop, source)}]})
        if self.include_usage:
            out += sse({**self.head, "object": "text_completion", "choices": [], "usage": {
                "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total}})
        return out + DONE


COMPLETIONS = CompletionsDialect()
