"""OpenTelemetry traces, an optional extra (`pip install '.[otel]'`): one span per API request
with the GenAI semantic-convention attributes, one child span per upstream attempt.

Rules:
- Off unless `opentelemetry` (api + sdk) is importable AND the standard environment asks for
  traces: `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
  `OTEL_SERVICE_NAME` is set (and `OTEL_SDK_DISABLED` is not `true`). No gateway config key:
  the SDK and the OTLP exporter read the other `OTEL_*` variables themselves.
- Spans are made from the request's record when it is told, so the hot path pays nothing and
  every request, refused or relayed, gets exactly one span. An attempt records its duration,
  not its start: attempt spans are laid end to end from arrival + queue wait (backoff pauses
  between attempts are not drawn). An `ok` attempt ends when the upstream answered.
- An incoming W3C `traceparent` makes the request span its child.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .config import Config
from .record import Record
from .spend import micros_to_usd

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

#: The route -> GenAI `gen_ai.operation.name` (models/count_tokens are not model calls).
OPERATIONS = {
    "chat_completions": "chat", "messages": "chat", "chat_stream": "chat", "responses": "chat",
    "embeddings": "embeddings", "completions": "text_completion",
}
ENABLING_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME")
SERVICE_NAME = "llm-stream-gateway"
#: Outcomes that mark the request span as an error (the gateway or an upstream failed).
ERROR_OUTCOMES = frozenset({"upstream_error", "upstream_timeout", "internal_error"})


class RequestTracer:
    """Turns told records into spans on `tracer`."""

    def __init__(self, tracer: Tracer, provider: TracerProvider | None = None) -> None:
        self.tracer = tracer
        self.provider = provider  # ours to flush and shut down, when we made it

    def trace(self, record: Record, headers: Mapping[str, str], config: Config) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        end = time.time_ns()
        start = end - int((time.perf_counter() - record.started) * 1e9)
        operation = OPERATIONS.get(record.route, record.route)
        systems = {u.name: u.dialect for u in config.upstreams}
        answered = next((a for a in reversed(record.attempts) if a.outcome == "ok"), None)
        attributes: dict[str, str | int | float | bool] = {
            "gen_ai.operation.name": operation,
            "http.route": record.route,
            "http.response.status_code": record.status,
            "gateway.request_id": record.request_id,
            "gateway.outcome": record.outcome,
            "gateway.retries": record.retries,
            "gateway.stream": record.stream,
        }
        if record.model is not None:
            attributes["gen_ai.request.model"] = record.model
        if record.tenant is not None:
            attributes["gateway.tenant"] = record.tenant.name
        if record.upstream is not None:
            attributes["gateway.upstream"] = record.upstream
            if record.upstream in systems:
                attributes["gen_ai.system"] = systems[record.upstream]
        if answered is not None:
            attributes["gen_ai.response.model"] = answered.model
        if record.usage is not None:
            attributes["gen_ai.usage.input_tokens"] = record.usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = record.usage.completion_tokens
        if record.ttfb is not None:
            attributes["gen_ai.server.time_to_first_token"] = record.ttfb
        if record.cost_micros is not None:
            attributes["gateway.cost_usd"] = micros_to_usd(record.cost_micros)
        if record.outcome != "ok":
            attributes["error.type"] = record.outcome
        name = f"{operation} {record.model}" if record.model else operation
        span = self.tracer.start_span(name, context=propagate.extract(headers), kind=SpanKind.SERVER,
                                      attributes=attributes, start_time=start)
        if record.outcome in ERROR_OUTCOMES or record.status >= 500:
            span.set_status(Status(StatusCode.ERROR, record.error or record.outcome))
        parent = trace.set_span_in_context(span)
        at = start + int((record.queue_wait or 0.0) * 1e9)
        for attempt in record.attempts:
            took = int(attempt.duration_ms * 1e6)
            child: dict[str, str | int | float | bool] = {
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": attempt.model,
                "gateway.upstream": attempt.upstream,
                "gateway.attempt.outcome": attempt.outcome,
            }
            if attempt.upstream in systems:
                child["gen_ai.system"] = systems[attempt.upstream]
            if attempt.status is not None:
                child["http.response.status_code"] = attempt.status
            if attempt.outcome != "ok":
                child["error.type"] = attempt.outcome
            one = self.tracer.start_span(f"{operation} {attempt.model}", context=parent,
                                         kind=SpanKind.CLIENT, attributes=child, start_time=at)
            if attempt.outcome not in ("ok", "skipped"):
                one.set_status(Status(StatusCode.ERROR, attempt.outcome))
            one.end(end_time=min(at + took, end))
            at += took
        span.end(end_time=end)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()  # flushes what the batch processor still holds


def from_env(env: Mapping[str, str]) -> RequestTracer | None:
    """A tracer exporting over OTLP when the environment asks for traces and the `otel` extra
    is installed; else None (tracing off)."""
    if not any(env.get(name) for name in ENABLING_ENV):
        return None
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return None
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours is the default name.
    named = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return RequestTracer(provider.get_tracer("gateway"), provider)


