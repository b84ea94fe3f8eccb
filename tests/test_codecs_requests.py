"""Request translation tables: OpenAI chat request <-> Anthropic Messages request."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.codecs import chat_to_messages, messages_to_chat
from gateway.errors import BadRequest

PNG = "iVBORw0KGgo="


def test_a_whole_tool_conversation_to_messages() -> None:
    body = {
        "model": "claude-x", "stream": True, "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather here?"},
                                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                                         {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg", "detail": "low"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Get weather",
                                                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                  {"type": "function", "function": {"name": "time"}}],
        "tool_choice": "required", "parallel_tool_calls": False,
        "max_completion_tokens": 300, "stop": "END", "temperature": 0.2, "top_p": 0.9, "user": "u-42",
        "seed": 7, "presence_penalty": 0.5,
    }
    assert chat_to_messages(body, default_max_tokens=1024) == {
        "model": "claude-x",
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "call_2", "name": "time", "input": {}}]},
            {"role": "user", "content": [  # two tool results and the user's words merged, results first
                {"type": "tool_result", "tool_use_id": "call_1", "content": "rain"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
                {"type": "text", "text": "Thanks"}]},
        ],
        "max_tokens": 300,
        "stop_sequences": ["END"],
        "temperature": 0.2, "top_p": 0.9, "stream": True,
        "metadata": {"user_id": "u-42"},
        "tools": [{"name": "weather", "description": "Get weather",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                  {"name": "time", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


@pytest.mark.parametrize(("extra", "expected"), [
    ({}, {"max_tokens": 1024}),
    ({"max_tokens": 50}, {"max_tokens": 50}),
    ({"max_tokens": 50, "max_completion_tokens": 70}, {"max_tokens": 70}),
    ({"stop": ["a", "b"]}, {"max_tokens": 1024, "stop_sequences": ["a", "b"]}),
    ({"stop": None}, {"max_tokens": 1024}),
    ({"tool_choice": "auto"}, {"max_tokens": 1024}),  # no tools: no tool_choice
    ({"response_format": {"type": "json_object"}}, {"max_tokens": 1024}),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
     {"max_tokens": 1024, "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}),
    ({"logit_bias": {"1": 2}, "logprobs": True, "n": 1}, {"max_tokens": 1024}),
])
def test_chat_options_table(extra: dict[str, Any], expected: dict[str, Any]) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    assert chat_to_messages(body, 1024) == {"messages": [{"role": "user", "content": "hi"}], **expected}


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
])
def test_tool_choice_table(choice: object, parallel: object, expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}],
                            "tools": [{"type": "function", "function": {"name": "f"}}]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert chat_to_messages(body, 10)["tool_choice"] == expected


def test_several_system_and_developer_messages_become_blocks_and_same_roles_merge() -> None:
    body = {"messages": [{"role": "developer", "content": "A"}, {"role": "user", "content": "1"},
                         {"role": "system", "content": [{"type": "text", "text": "B"}]},
                         {"role": "user", "content": "2"}, {"role": "assistant", "content": ""},
                         {"role": "assistant", "content": "ok"}]}
    out = chat_to_messages(body, 10)
    assert out["system"] == [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "1"}, {"type": "text", "text": "2"}]},
        {"role": "assistant", "content": "ok"}]  # the empty assistant turn is dropped


def test_inline_pdf_becomes_a_document_block() -> None:
    part = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}}
    out = chat_to_messages({"messages": [{"role": "user", "content": [part]}]}, 10)
    assert out["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]


@pytest.mark.parametrize(("body", "message"), [
    ({}, "'messages' must be a non-empty list"),
    ({"messages": "hi"}, "'messages' must be a non-empty list"),
    ({"messages": ["hi"]}, "messages[0] must be an object"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role must be system, developer, user, assistant or tool"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content must be a string or a list of content parts"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0]: audio input is not supported for this model"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
     "messages[0].content[0].image_url.url must be an http(s) URL or a base64 data URL"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id must be a non-empty string"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}]}]},
     "messages[0].tool_calls[0].function.arguments is not valid JSON"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "messages[0].tool_calls[0].function.arguments must be a JSON object"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]},
     "messages[0].tool_calls[0] must be an object with an id and a function"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "'n' above 1 is not supported for this model"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "'max_tokens' must be a positive integer"),
    ({"messages": [{"role": "user", "content": "x"}], "stop": 3}, "'stop' must be a string or a list of strings"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}, "tools[0] must be a function tool"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": "sometimes"}, "'tool_choice' must be auto, none, required or a named function"),
])
def test_malformed_chat_requests_are_bad_requests(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as raised:
        chat_to_messages(body, 10)
    assert raised.value.message == message and raised.value.status == 400


def test_a_whole_tool_conversation_to_chat() -> None:
    body = {
        "model": "gpt-x", "max_tokens": 256, "stream": True, "system": [{"type": "text", "text": "Be brief.",
                                                                          "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                              {"type": "text", "text": "Checking."},
                                              {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"},
                                         {"type": "text", "text": "And tomorrow?"}]},
        ],
        "tools": [{"name": "weather", "description": "Get weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.8, "top_k": 5,
        "metadata": {"user_id": "u-1"}, "thinking": {"type": "enabled", "budget_tokens": 2000},
    }
    assert messages_to_chat(body) == {
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "rain"},
            {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
        ],
        "max_tokens": 256, "stop": ["END"], "temperature": 0.5, "top_p": 0.8, "user": "u-1",
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Get weather",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}}, "parallel_tool_calls": False,
        "stream": True, "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, {"tool_choice": "auto"}),
    ({"type": "any"}, {"tool_choice": "required"}),
    ({"type": "none"}, {"tool_choice": "none"}),
    ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
])
def test_anthropic_tool_choice_table(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "tool_choice": choice,
            "tools": [{"name": "f", "input_schema": {"type": "object"}}]}
    out = messages_to_chat(body)
    assert {k: out[k] for k in ("tool_choice", "parallel_tool_calls") if k in out} == expected


def test_simple_anthropic_request_and_structured_output() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "system": "sys", "stream": False,
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}
    assert messages_to_chat(body) == {
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
        "max_tokens": 5, "stream": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"},
                                                                   "strict": True}}}


@pytest.mark.parametrize(("body", "message"), [
    ({"messages": []}, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role must be user or assistant"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]},
     "messages[0].content[0].source must be a base64 or url source"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
     "messages[0].content[0].tool_use_id must be a non-empty string"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": {}}]}]}]}, "messages[0].content[0].content[0] must be a text block"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f"}]}]},
     "messages[0].content[0] needs a string id and name"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "tools[0]: server tool 'web_search_20250305' is not supported for this model"),
    ({"messages": [{"role": "user", "content": "x"}], "stop_sequences": "END"}, "'stop_sequences' must be a list of strings"),
    ({"messages": [{"role": "user", "content": "x"}], "system": 3}, "'system' must be a string or a list of text blocks"),
])
def test_malformed_anthropic_requests_are_bad_requests(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as raised:
        messages_to_chat(body)
    assert raised.value.message == message


def test_a_round_trip_keeps_the_conversation() -> None:
    chat = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                         {"role": "assistant", "content": "A", "tool_calls": [
                             {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": "R"}],
            "max_tokens": 9, "stop": ["X"]}
    back = messages_to_chat(chat_to_messages(chat, 100))
    assert back["messages"] == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "R"}]
    assert (back["max_tokens"], back["stop"]) == (9, ["X"])
