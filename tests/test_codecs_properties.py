"""Hypothesis: any valid event sequence of one dialect translates into a valid sequence of the other.

Every output event parses as JSON (but `[DONE]`) and as the SDK's own type, there is exactly one
terminal event and it comes last, tool-call indices and blocks are consistent, and the text and
tool arguments that went in come out.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codecs import AnthropicToChat, ChatToAnthropic, SimpleCodec
from gateway.sse import Event, EventParser

from ._codec_streams import Recorded, anthropic_events, data_of, flat, openai_chunks, run

TEXT = st.text(min_size=1, max_size=12)
NAMES = st.from_regex(r"[a-z_]{1,10}", fullmatch=True)
INPUTS = st.dictionaries(NAMES, st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=8), st.booleans()), max_size=3)


@st.composite
def pieces(draw: st.DrawFn, whole: str) -> list[str]:
    """`whole` cut at random points (no piece empty)."""
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(whole) - 1)), max_size=6))) if len(whole) > 1 else []
    bounds = [0, *cuts, len(whole)]
    return [whole[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if whole[a:b]]


@st.composite
def anthropic_streams(draw: st.DrawFn) -> tuple[Recorded, str, list[dict[str, Any]], bool]:
    """(events, the answer text, the tool inputs, whether it ends in an error)."""
    events: Recorded = [("message_start", {"type": "message_start", "message": {
        "id": "msg_h", "type": "message", "role": "assistant", "content": [], "model": "c",
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": draw(st.integers(0, 9999)), "output_tokens": 1}}})]
    text, tools = "", []
    for index, kind in enumerate(draw(st.lists(st.sampled_from(["text", "thinking", "tool"]), max_size=5))):
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": t} for t in draw(st.lists(TEXT, max_size=4))]
            text += "".join(d["text"] for d in deltas)
        elif kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": t} for t in draw(st.lists(TEXT, max_size=3))]
            deltas.append({"type": "signature_delta", "signature": "sig"})
        else:
            tool_input = draw(INPUTS)
            tools.append(tool_input)
            block = {"type": "tool_use", "id": f"toolu_{index}", "name": draw(NAMES), "input": {}}
            fragments = draw(pieces(orjson.dumps(tool_input).decode()))
            deltas = [{"type": "input_json_delta", "partial_json": f} for f in ["", *fragments]]
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        for delta in deltas:
            if draw(st.booleans()):
                events.append(("ping", {"type": "ping"}))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    reason = draw(st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn"]))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                                     "usage": {"output_tokens": draw(st.integers(0, 9999))}}))
    events.append(("message_stop", {"type": "message_stop"}))
    cut = draw(st.none() | st.integers(1, len(events) - 1))
    if cut is None:
        return events, text, tools, False
    error = ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    return [*events[:cut], error], text, tools, True


@st.composite
def openai_streams(draw: st.DrawFn) -> tuple[Recorded, str, list[dict[str, Any]], bool]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[str, Any]:
        return "message", {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "g",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events: Recorded = [chunk({"role": "assistant", "content": ""})]
    text, tools = "", []
    for kind in draw(st.lists(st.sampled_from(["text", "reasoning", "tool"]), max_size=5)):
        if kind == "text":
            parts = draw(st.lists(TEXT, max_size=4))
            text += "".join(parts)
            events += [chunk({"content": p}) for p in parts]
        elif kind == "reasoning":
            events += [chunk({"reasoning_content": p}) for p in draw(st.lists(TEXT, max_size=3))]
        else:
            tool_input = draw(INPUTS)
            index = len(tools)
            tools.append(tool_input)
            first = {"index": index, "id": f"call_{index}", "type": "function",
                     "function": {"name": draw(NAMES), "arguments": ""}}
            events.append(chunk({"tool_calls": [first]}))
            events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": f}}]})
                       for f in draw(pieces(orjson.dumps(tool_input).decode()))]
    events.append(chunk({}, draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))))
    if draw(st.booleans()):
        events.append(("message", {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "g",
                                   "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7,
                                                            "total_tokens": 12}}))
    events.append(("message", "[DONE]"))
    cut = draw(st.none() | st.integers(1, len(events) - 1))
    if cut is None:
        return events, text, tools, False
    return [*events[:cut], ("message", {"error": {"message": "boom", "type": "server_error", "code": None}})], text, tools, True


@settings(max_examples=150, deadline=None)
@given(anthropic_streams(), st.booleans())
def test_any_anthropic_stream_becomes_a_valid_chat_stream(
        stream: tuple[Recorded, str, list[dict[str, Any]], bool], include_usage: bool) -> None:
    recorded, text, tools, failed = stream
    translator = AnthropicToChat(model="m", include_usage=include_usage, created=1, id="chatcmpl-h")
    events = flat(run(translator, recorded))
    assert translator.done
    terminal = [i for i, e in enumerate(events) if e.data == "[DONE]" or "error" in orjson.loads(e.data)]
    assert terminal == [len(events) - 1]  # exactly one terminal event, the last one
    if failed:
        assert orjson.loads(events[-1].data)["error"]["message"] == "Overloaded"
        chunks = openai_chunks([*events[:-1], Event("message", "[DONE]")])  # all but the error
    else:
        chunks = openai_chunks(events)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    calls: dict[int, list[Any]] = {}
    for c in chunks:
        for call in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            calls.setdefault(call.index, []).append(call)
    assert sorted(calls) == list(range(len(calls)))  # 0-based, no gaps
    for index, parts in calls.items():
        assert parts[0].id is not None and parts[0].function is not None and parts[0].function.name
        assert all(p.id is None for p in parts[1:])
        arguments = "".join(p.function.arguments or "" for p in parts if p.function)
        if not failed:
            assert orjson.loads(arguments) == tools[index]
    if not failed:
        assert content == text and len(calls) == len(tools)
        assert len([c for c in chunks if c.choices and c.choices[0].finish_reason]) == 1
    else:
        assert text.startswith(content)


@settings(max_examples=150, deadline=None)
@given(openai_streams())
def test_any_chat_stream_becomes_a_valid_anthropic_stream(
        stream: tuple[Recorded, str, list[dict[str, Any]], bool]) -> None:
    recorded, text, tools, failed = stream
    translator = ChatToAnthropic(model="m", id="msg_h")
    events = flat(run(translator, recorded))
    parsed = anthropic_events(events)  # every event is one the anthropic SDK reads
    names = [e.event for e in events]
    assert translator.done and names[0] == "message_start"
    assert [n for n in names if n in ("message_stop", "error")] == [names[-1]]
    assert names[-1] == ("error" if failed else "message_stop")
    opened: list[int] = []
    closed: list[int] = []
    blocks: dict[int, dict[str, Any]] = {}
    for event in parsed:
        if event.type == "content_block_start":
            assert event.index == len(opened)  # indices are sequential
            opened.append(event.index)
            blocks[event.index] = {"type": event.content_block.type, "text": "", "json": ""}
        elif event.type == "content_block_delta":
            assert event.index in opened
            assert event.index not in closed or event.delta.type == "input_json_delta"
            block = blocks[event.index]
            block["text"] += getattr(event.delta, "text", "")
            block["json"] += getattr(event.delta, "partial_json", "")
        elif event.type == "content_block_stop":
            assert event.index in opened and event.index not in closed
            closed.append(event.index)
    if not failed:
        assert sorted(closed) == opened  # every block closed once
        assert "".join(b["text"] for b in blocks.values() if b["type"] == "text") == text
        assert [orjson.loads(b["json"]) for b in blocks.values() if b["type"] == "tool_use"] == tools
    else:
        assert text.startswith("".join(b["text"] for b in blocks.values() if b["type"] == "text"))


@settings(max_examples=100, deadline=None)
@given(st.one_of(anthropic_streams().map(lambda s: ("anthropic", s)), openai_streams().map(lambda s: ("openai", s))))
def test_simple_events_carry_the_text_of_either_dialect(case: tuple[str, Any]) -> None:
    dialect, (recorded, text, _, failed) = case
    codec = SimpleCodec(dialect)
    out = b"".join(codec.feed(event, data_of(payload)) for event, payload in recorded)
    events = EventParser().feed(out)
    assert [e.event for e in events if e.event in ("done", "error")] == [events[-1].event]
    assert events[-1].event == ("error" if failed else "done")
    streamed = "".join(orjson.loads(e.data)["content"] for e in events if e.event == "message")
    if failed:
        assert text.startswith(streamed)
    else:
        assert streamed == text
