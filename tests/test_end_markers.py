"""End markers on parsed lines (issue 23.3, 22.4) and honest endings (22.3), through HTTP with a
hostile stand-in upstream (tests/_scripted.py) that sends exact bytes:

- model text holding `data: [DONE]`, `event: message_stop` or `response.completed` does not
  end a truncated stream: it is an error (resumed on a `resume_midstream` route);
- model text holding `event: error` does not fail a complete stream;
- a complete answer without its end marker is a success: the gateway writes the marker and
  counts `gateway_upstream_errors_total{kind="no_end_marker"}`;
- a partial last line at EOF is never forwarded: a whole event goes with its line end, half a
  line is a cut (one clean error event on its own line, or resumed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests._scripted import (
    ANTHROPIC_END,
    Script,
    Scripted,
    anthropic_finish,
    anthropic_start,
    anthropic_text,
    chat_chunk,
    responses_event,
    scripted,
    sse,
)
from tests.conftest import Gateway, GatewayFactory, Mock, auth, chat_body

HOSTILE = "see\n\ndata: [DONE]\n\nevent: message_stop\ndata: {}\n\nresponse.completed\nevent: response.completed\n"
USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}


@pytest.fixture
async def upstream() -> AsyncIterator[Scripted]:
    async with scripted({}) as found:
        yield found


def _upstreams(standin: Scripted, mock: Mock) -> list[dict[str, Any]]:
    fast = {"max_retries": 0, "failures_to_trip": 0, "backoff_base_seconds": 0.01}
    return [
        {"name": "s", "dialect": "openai", "base_url": f"{standin.url}/v1",
         "api_key_env": "MOCK_OPENAI_KEY", **fast},
        {"name": "sa", "dialect": "anthropic", "base_url": standin.url,
         "api_key_env": "MOCK_ANTHROPIC_KEY", **fast},
        {"name": "b", "dialect": "openai", "base_url": f"{mock.url}/v1", "api_key_env": "MOCK_OPENAI_KEY",
         "supports_prefill": True, **fast},
        {"name": "ba", "dialect": "anthropic", "base_url": mock.url, "api_key_env": "MOCK_ANTHROPIC_KEY",
         "supports_prefill": True, **fast},
    ]


async def _gateway(start_gateway: GatewayFactory, standin: Scripted, mock: Mock, target: str,
                   resume_on: str | None = None) -> Gateway:
    targets = [target] + ([resume_on] if resume_on else [])
    return await start_gateway(upstreams=_upstreams(standin, mock), routes=[
        {"model": "chat", "targets": targets, "resume_midstream": resume_on is not None}])


async def _post(gateway: Gateway, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    response = await gateway.client.post(path, json=body, headers=auth())
    return response.status, await response.read()


def _events(body: bytes) -> list[tuple[str, str]]:
    """(event, data) of each event, checking every event's data is whole JSON or [DONE]."""
    out = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line and not line.startswith(b":")]
        if not lines:
            continue
        names = [line[6:].strip().decode() for line in lines if line.startswith(b"event:")]
        event = names[-1] if names else "message"  # the last `event:` line wins
        if not any(line.startswith(b"data:") for line in lines):
            continue  # no data: dispatches nothing
        data = b"\n".join(line[5:].strip() for line in lines if line.startswith(b"data:"))
        if data != b"[DONE]":
            orjson.loads(data)  # a corrupted (glued) event fails here
        out.append((event, data.decode()))
    return out


async def _errors(gateway: Gateway, upstream: str, kind: str) -> float:
    try:
        return await gateway.metric("gateway_upstream_errors_total", upstream=upstream, kind=kind)
    except AssertionError:
        return 0.0


MESSAGES_BODY = {"model": "chat", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
RESPONSES_BODY = {"model": "chat", "input": "hi", "stream": True}


# --- 23.3: markers in the model's text ---------------------------------------------------


@pytest.mark.parametrize("end", ["eof", "abort"])
async def test_an_openai_stream_cut_after_marker_text_is_an_error(
    start_gateway: GatewayFactory, upstream: Scripted, mock: Mock, end: str,
) -> None:
    upstream.scripts["m"] = Script([chat_chunk("Hi", role=True), chat_chunk(HOSTILE)], end=end)
    gateway = await _gateway(start_gateway, upstream, mock, "s:m")
    status, body = await _post(gateway, "/v1/chat/completions", chat_body("chat"))
    assert status == 200
    events = _events(body)
    assert "error" in orjson.loads(events[-1][1])
    assert all(data != "[DONE]" for _, data in events)
    line = gateway.request_logs()[-1]
    assert line["outcome"] == "upstream_error"


async def test_an_anthropic_stream_cut_after_marker_text_is_an_error(
    start_gateway: GatewayFactory, upstream: Scripted, mock: Mock,
) -> None:
    upstream.scripts["m"] = Script([anthropic_start(), anthropic_text(HOSTILE)])
    gateway = await _gateway(start_gateway, upstream, mock, "sa:m")
    status, body = await _post(gateway, "/v1/messages", MESSAGES_BODY)
    assert status == 200
    events = _events(body)
    assert events[-1][0] == "error" and "message_stop" not in [e for e, _ in events]
    assert gateway.request_logs()[-1]["outcome"] == "upstream_error"


async def test_a_responses_stream_cut_after_marker_text_is_an_error(
    start_gateway: GatewayFactory, upstream: Scripted, mock: Mock,
) -> None:
    upstream.scripts["m"] = Script([
        responses_event("response.created", 0, response={"id": "r1"}),
        responses_event("response.output_text.delta", 1, delta=HOSTILE)])
    gateway = await _gateway(start_gateway, upstream, mock, "s:m")
    status, body = await _post(gateway, "/v1/responses", RESPONSES_BODY)
    assert status == 200
    event, data = _events(body)[-1]
    assert event == "error" and orjson.loads(data)["sequence_number"] == 2
    assert gateway.request_logs()[-1]["outcome"] == "upstream_error"


@pytest.mark.parametrize(("path", "target", "resume_on"), [
    ("/v1/chat/completions", "s:m", "b:mock-1"),
    ("/v1/messages", "sa:m", "ba:claude-3-haiku"),
])
async def test_a_stream_cut_after_marker_text_is_resumed(
    start_gateway: GatewayFactory, upstream: Scripted, mock: Mock, path: str, target: str, resume_on: str,
) -> None:
    anthropic = path == "/v1/messages"
    upstream.scripts["m"] = Script(
        [anthropic_start(), anthropic_text("Hi "), anthropic_text(HOSTILE)] if anthropic
        else [chat_chunk("Hi ", role=True), chat_chunk(HOSTILE)])
    gateway = await _gateway(start_gateway, upstream, mock, target, resume_on)
    status, body = await _post(gateway, path, MESSAGES_BODY if anthropic else chat_body("chat"))
    assert status == 200
    events = _events(body)
    assert events[-1] == (("message_stop", '{"type":"message_stop"}') if anthropic else ("message", "[DONE]"))
    continuation = [r for r in mock.state.requests if r.body is not None]
    assert continuation and continuation[-1].body["messages"][-1] == {"role": "assistant", "content": "Hi " + HOSTILE}
    assert gateway.request_logs()[-1]["outcome"] == "ok"
    assert await gateway.metric("gateway_midstream_recoveries_total", result="ok") == 1


@pytest.mark.parametrize(("path", "target"), [("/v1/chat/completions", "s:m"), ("/v1/messages", "sa:m"),
                                              ("/v1/chat/completions", "sa:m"), ("/api/chat/stream", "s:m")])
async def test_a_complete_stream_whose_text_holds_event_error_is_ok(
    start_gateway: GatewayFactory, upstream: Scripted, mock: Mock, path: str, target: str,
) -> None:
    text = 'oops\nevent: error\ndata: {"error": {"message": "x"}}\n\ndata: {"type":"error"}\n'
    if target.startswith("sa:"):
        upstream.scripts["m"] = Script([anthropic_start(), anthropic_text(text), anthropic_finish(),
                                        ANTHROPIC_END])
    else:
        upstream.scripts["m"] = Script([chat_chunk(text, role=True), chat_chunk(finish="stop"),
                                        sse("[DONE]")])
    gateway = await _gateway(start_gateway, upstream, mock, target)
    status, body = await _post(gateway, path, MESSAGES_BODY if path == "/v1/messages" else chat_body("chat"))
    assert status == 200
    assert _events(body)[-1][0] in ("message", "message_stop", "done")
    line = gateway.request_logs()[-1]
    assert (line["outcome"], line.get("error")) == ("ok", None)
    assert await _errors(gateway, target.split(":")[0], "upstream_error") == 0


# --- 22.3: a complete answer without its end marker ---------------------------------------


@pytest.mark.parametrize(("path", "target", "ending"), [
    ("/v1/chat/completions", "s:m", ("message", "[DONE]")),
    ("/v1/messages", "sa:m", ("message_stop", '{"type":"message_stop"}')),
    ("/v1/chat/completions", "sa:m", ("message", "[DONE]")),
    ("/v1/messages", "s:m", ("message_stop", '{"type":"message_stop"}')),
    ("/api/chat/stream", "s:m", ("done", "{}")),
    ("/api/chat/stream", "sa:m", ("done", "{}")),
])
async def test_a_complete_answer_without_its_end_marker_is_a_success(
    start_gateway: GatewayFactory, upstream: Scripted, mock: Mock, path: str, target: str,
    ending: tuple[str, str],
) -> None:
    if target.startswith("sa:"):
        upstream.scripts["m"] = Script([anthropic_start(), anthropic_text("Hello"), anthropic_finish(7)])
    else:
        upstream.scripts["m"] = Script([chat_chunk("Hello", role=True), chat_chunk(finish="stop"),
                                        chat_chunk(usage=USAGE)])
    gateway = await _gateway(start_gateway, upstream, mock, target)
    body = {**(MESSAGES_BODY if path == "/v1/messages" else chat_body("chat")),
            "stream_options": {"include_usage": True}} if path == "/v1/chat/completions" else (
        MESSAGES_BODY if path == "/v1/messages" else chat_body("chat"))
    status, answer = await _post(gateway, path, body)
    assert status == 200
    events = _events(answer)
    assert events[-1] == ending
    assert [e for e in events if e[0] == "error" or '"error"' in e[1]] == []
    line = gateway.request_logs()[-1]
    assert line["outcome"] == "ok" and line["completion_tokens"] == 7
    assert await _errors(gateway, target.split(":")[0], "no_end_marker") == 1


async def test_a_complete_completions_stream_without_done_gets_it(
    start_gateway: GatewayFactory, upstream: Scripted, mock: Mock,
) -> None:
    chunk = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m"}
    upstream.scripts["m"] = Script([sse({**chunk, "choices": [{"index": 0, "text": "Hi", "finish_reason": None}]}),
                                    sse({**chunk, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})])
    gateway = await _gateway(start_gateway, upstream, mock, "s:m")
    status, body = await _post(gateway, "/v1/completions", {"model": "chat", "prompt": "hi", "stream": True})
    assert status == 200 and _events(body)[-1] == ("message", "[DONE]")
    assert gateway.request_logs()[-1]["outcome"] == "ok"
    assert await _errors(gateway, "s", "no_end_marker") == 1


async def test_an_answer_without_a_finish_and_without_its_end_marker_is_still_truncated(
    start_gateway: GatewayFactory, upstream: Scripted, mock: Mock,
) -> None:
    upstream.scripts["m"] = Script([chat_chunk("Hello", role=True), chat_chunk(" there")])
    gateway = await _gateway(start_gateway, upstream, mock, "s:m")
    status, body = await _post(gateway, "/v1/chat/completions", chat_body("chat"))
    assert status == 200 and "error" in orjson.loads(_events(body)[-1][1])
    assert gateway.request_logs()[-1]["outcome"] == "upstream_error"
    assert await _errors(gateway, "s", "no_end_marker") == 0


# --- 22.3: a partial last line at EOF -------------------------------------------------------


@pytest.mark.parametrize(("path", "target"), [("/v1/chat/completions", "s:m"), ("/v1/messages", "sa:m"),
                                              ("/v1/messages", "s:m"), ("/api/chat/stream", "s:m")])
async def test_a_partial_last_line_is_dropped_and_the_error_is_one_clean_event(
    start_gateway: GatewayFactory, upstream: Scripted, mock: Mock, path: str, target: str,
) -> None:
    if target.startswith("sa:"):
        upstream.scripts["m"] = Script([anthropic_start(), anthropic_text("Hi"),
                                        b'event: content_block_delta\ndata: {"type":"content_block_del'])
    else:
        upstream.scripts["m"] = Script([chat_chunk("Hi", role=True), b'data: {"choices":[{"del'])
    gateway = await _gateway(start_gateway, upstream, mock, target)
    status, body = await _post(gateway, path, MESSAGES_BODY if path == "/v1/messages" else chat_body("chat"))
    assert status == 200
    assert b'{"del' not in body and b'"content_block_del"' not in body
    events = _events(body)  # every event whole: nothing glued to half a line
    errors = [e for e in events if e[0] == "error" or e[1].startswith('{"error"')]
    assert len(errors) == 1 and events[-1] == errors[0]
    assert gateway.request_logs()[-1]["outcome"] == "upstream_error"


async def test_a_partial_last_line_is_resumed_on_a_resume_route(
    start_gateway: GatewayFactory, upstream: Scripted, mock: Mock,
) -> None:
    upstream.scripts["m"] = Script([chat_chunk("Hi", role=True), b'data: {"choices":[{"del'])
    gateway = await _gateway(start_gateway, upstream, mock, "s:m", "b:mock-1")
    status, body = await _post(gateway, "/v1/chat/completions", chat_body("chat"))
    assert status == 200 and b'{"del' not in body
    assert _events(body)[-1] == ("message", "[DONE]")
    assert gateway.request_logs()[-1]["outcome"] == "ok"


async def test_a_whole_last_line_without_its_line_end_is_forwarded_with_it(
    start_gateway: GatewayFactory, upstream: Scripted, mock: Mock,
) -> None:
    upstream.scripts["m"] = Script([chat_chunk("Hi", role=True), chat_chunk(finish="stop"), b"data: [DONE]"])
    gateway = await _gateway(start_gateway, upstream, mock, "s:m")
    status, body = await _post(gateway, "/v1/chat/completions", chat_body("chat"))
    assert status == 200 and body.endswith(b"data: [DONE]\n\n")
    assert gateway.request_logs()[-1]["outcome"] == "ok"
    assert await _errors(gateway, "s", "no_end_marker") == 0
