"""Relay proofs: the completion estimate counts events, not `data:` inside the model's text."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.dialects import OPENAI, UsageMeter


def chunk(text: str) -> bytes:
    body = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def test_data_inside_the_model_text_is_not_an_event() -> None:
    meter = UsageMeter(OPENAI, prompt_estimate=3)
    meter.observe(chunk("data: data: data:"))
    meter.observe(chunk("x\ndata: y"))  # JSON escapes the newline: still one line
    meter.observe(b"data: [DONE]\n\n")
    assert meter.usage.completion_tokens == 2


@given(st.lists(st.text(max_size=40), min_size=1, max_size=20))
def test_one_estimated_token_per_event_whatever_the_text(texts: list[str]) -> None:
    meter = UsageMeter(OPENAI, prompt_estimate=1)
    meter.observe(b"".join(chunk(text) for text in texts) + b"data: [DONE]\n\n")
    assert meter.usage.completion_tokens == len(texts)
