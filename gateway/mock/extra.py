"""The mock's other OpenAI/Anthropic endpoints, pure: legacy completions, embeddings, token counts.

`/v1/completions` streams like chat (`[DONE]` at the end, a usage chunk when asked);
`/v1/embeddings` gives unit vectors from a hash of each input; `/v1/messages/count_tokens`
counts the words of a request as `/v1/messages` would report its `input_tokens`.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Iterator
from typing import Any

from .answers import Answer, Conversation, prompt_tokens
from .shapes import Event, OpenAIShape, Step

EMBEDDING_DIMENSIONS = 16  # when the request does not ask for `dimensions`


class CompletionsShape(OpenAIShape):
    """`/v1/completions`: `prompt` in, `choices[].text` out."""

    id_prefix = "cmpl-mock"

    def max_tokens(self, body: dict[str, Any]) -> Any:
        return body.get("max_tokens")

    def read(self, body: dict[str, Any]) -> Conversation | str:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompt = " ".join(prompt)
        if not isinstance(prompt, str):
            return "'prompt' must be a string or a non-empty list of strings"
        return Conversation([{"role": "user", "content": prompt}])

    def _choice(self, text: str, finish: str | None) -> dict[str, Any]:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

    def _text_chunk(self, a: Answer, choices: list[Any]) -> dict[str, Any]:
        return {
            "id": a.id,
            "object": "text_completion",
            "created": a.created,
            "model": a.model,
            "choices": choices,
        }

    def completion(self, a: Answer) -> dict[str, Any]:
        finish = "length" if a.capped else "stop"
        return {**self._text_chunk(a, [self._choice(a.text, finish)]), "usage": self.usage(a)}

    def stream(self, a: Answer) -> Iterator[Step]:
        for piece in a.pieces:
            yield (None, self._text_chunk(a, [self._choice(piece, None)])), "content"
        finish = "length" if a.capped else "stop"
        yield (None, self._text_chunk(a, [self._choice("", finish)])), "meta"
        if a.include_usage:
            yield (None, {**self._text_chunk(a, []), "usage": self.usage(a)}), "meta"
        last: Event = (None, b"[DONE]")
        yield last, "end"


COMPLETIONS_SHAPE = CompletionsShape()


def embedding_inputs(body: dict[str, Any]) -> list[str] | str:
    """Each input as text (token arrays as their numbers), or why the body is a 400."""
    given = body.get("input")
    if isinstance(given, str) or (
        isinstance(given, list) and given and all(isinstance(t, int) for t in given)
    ):
        given = [given]
    if not isinstance(given, list) or not given:
        return "'input' must be a string, a list of strings or token arrays"
    texts: list[str] = []
    for item in given:
        if isinstance(item, str) and item:
            texts.append(item)
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            texts.append(" ".join(map(str, item)))
        else:
            return "each input must be a non-empty string or token array"
    return texts


def embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector from sha256 of the text: same text, same vector."""
    raw: list[float] = []
    digest = hashlib.sha256(text.encode()).digest()
    while len(raw) < dimensions:
        raw += [b / 127.5 - 1 for b in digest]
        digest = hashlib.sha256(digest).digest()
    raw = raw[:dimensions]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def embeddings_body(body: dict[str, Any], texts: list[str]) -> dict[str, Any] | str:
    dimensions = body.get("dimensions", EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
        return "'dimensions' must be an integer from 1 to 4096"
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return "'encoding_format' must be 'float' or 'base64'"
    data = []
    for i, text in enumerate(texts):
        vector: Any = embedding(text, dimensions)
        if encoding == "base64":  # little-endian float32, as the API sends (the SDK asks for this)
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    tokens = sum(max(1, len(t.split())) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": str(body.get("model", "mock-embed")),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def count_tokens(talk: Conversation) -> dict[str, int]:
    """`{"input_tokens": N}`, the same N `/v1/messages` reports for that request."""
    return {"input_tokens": prompt_tokens(talk)}
