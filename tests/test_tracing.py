"""OpenTelemetry tracing: spans with the GenAI attributes, through HTTP, into the SDK's
in-memory exporter; and when the environment turns tracing on."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.app import build_app
from gateway.logs import make_logger
from gateway.state import TRACER
from gateway.tracing import RequestTracer, from_env
from tests.conftest import Mock, auth, chat_body, make_config


async def traced(aiohttp_client: Any, mock: Mock) -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = build_app(make_config(mock.url), make_logger(io.StringIO()))
    app[TRACER] = RequestTracer(provider.get_tracer("test"), provider)
    return await aiohttp_client(app), exporter


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind == kind]


async def test_a_stream_is_one_server_span_with_genai_attributes_and_a_child_per_attempt(
        aiohttp_client: Any, mock: Mock) -> None:
    client, exporter = await traced(aiohttp_client, mock)
    body = chat_body("mock-1")
    body["stream_options"] = {"include_usage": True}
    async with client.post("/v1/chat/completions", json=body, headers=auth()) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "[DONE]" in text
    spans = exporter.get_finished_spans()
    [server] = by_kind(spans, SpanKind.SERVER)
    [attempt] = by_kind(spans, SpanKind.CLIENT)
    attrs = dict(server.attributes or {})
    assert server.name == "chat mock-1"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.system"] == "openai"
    assert attrs["gen_ai.request.model"] == "mock-1"
    assert attrs["gen_ai.response.model"] == "mock-1"
    assert attrs["gen_ai.usage.output_tokens"] == 12  # the mock answers 12 words, one token each
    assert isinstance(attrs["gen_ai.usage.input_tokens"], int) and attrs["gen_ai.usage.input_tokens"] > 0
    assert isinstance(attrs["gen_ai.server.time_to_first_token"], float)
    assert attrs["gateway.tenant"] == "tenant-a"
    assert attrs["http.response.status_code"] == 200
    assert server.status.status_code == StatusCode.UNSET
    assert attempt.parent is not None and attempt.parent.span_id == server.context.span_id
    assert attempt.context.trace_id == server.context.trace_id
    assert dict(attempt.attributes or {})["gateway.attempt.outcome"] == "ok"
    assert server.start_time is not None and attempt.start_time is not None
    assert server.end_time is not None and attempt.end_time is not None
    assert server.start_time <= attempt.start_time <= attempt.end_time <= server.end_time


async def test_a_retried_attempt_is_its_own_failed_child_span(aiohttp_client: Any, mock: Mock) -> None:
    client, exporter = await traced(aiohttp_client, mock)
    async with client.post("/v1/chat/completions", json=chat_body("mock-1+fail=1"),
                           headers=auth()) as resp:
        assert resp.status == 200
        await resp.read()
    spans = exporter.get_finished_spans()
    [server] = by_kind(spans, SpanKind.SERVER)
    attempts = sorted(by_kind(spans, SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    outcomes = [dict(a.attributes or {})["gateway.attempt.outcome"] for a in attempts]
    assert outcomes == ["status", "ok"]
    assert dict(attempts[0].attributes or {})["http.response.status_code"] == 500
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert dict(server.attributes or {})["gateway.retries"] == 1


async def test_an_upstream_failure_marks_the_request_span_as_an_error(aiohttp_client: Any, mock: Mock) -> None:
    client, exporter = await traced(aiohttp_client, mock)
    async with client.post("/v1/chat/completions", json=chat_body("mock-1+status=503"),
                           headers=auth()) as resp:
        assert resp.status == 502
    [server] = by_kind(exporter.get_finished_spans(), SpanKind.SERVER)
    assert server.status.status_code == StatusCode.ERROR
    assert dict(server.attributes or {})["error.type"] == "upstream_error"


async def test_a_refused_request_still_gets_its_span_and_joins_the_callers_trace(
        aiohttp_client: Any, mock: Mock) -> None:
    client, exporter = await traced(aiohttp_client, mock)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with client.post("/v1/chat/completions", data=orjson.dumps(chat_body()),
                           headers={"Authorization": "Bearer nope", "traceparent": parent}) as resp:
        assert resp.status == 401
    [server] = exporter.get_finished_spans()
    attrs = dict(server.attributes or {})
    assert attrs["http.response.status_code"] == 401
    assert attrs["error.type"] == "unauthorized"
    assert server.context.trace_id == 0x0af7651916cd43dd8448eb211c80319c
    assert server.parent is not None and server.parent.span_id == 0xb7ad6b7169203331


@pytest.mark.parametrize("env", [
    {},
    {"OTEL_TRACES_EXPORTER": "otlp"},  # not one of the variables that turn tracing on
    {"OTEL_SERVICE_NAME": "gw", "OTEL_SDK_DISABLED": "true"},
])
def test_tracing_is_off_unless_the_environment_asks_for_it(env: dict[str, str]) -> None:
    assert from_env(env) is None


def test_an_otlp_endpoint_turns_tracing_on_with_the_service_name() -> None:
    tracer = from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracer is not None and tracer.provider is not None
    try:
        assert tracer.provider.resource.attributes["service.name"] == "llm-stream-gateway"
    finally:
        tracer.shutdown()
