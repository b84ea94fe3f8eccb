"""The request record: what one API request was and how it ended, told once at its end as
one JSON log line and its metrics.

The middleware creates the record (and sets its status and outcome when the handler raised);
the route handler fills it from the values each stage hands back (tenant, call, ticket, the
policy's attempts, the opened upstream, the relay's outcome, the charge); nothing below the
handler writes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from structlog.typing import FilteringBoundLogger

from .config import Config, Tenant
from .dialects import Usage
from .logs import info_line
from .metrics import Metrics
from .series import Series
from .spend import micros_to_usd
from .upstream.attempt import Attempt

#: Longest string the log line carries per field: a client-chosen value (a 500 KB model
#: name) must not make a 1 MB log line.
MAX_LOGGED = 256


@dataclass(slots=True, eq=False)
class Record:
    request_id: str
    route: str
    started: float  # time.perf_counter() at arrival (durations)
    arrived: float  # the loop's time at arrival (deadlines: the loop's timers run on it)
    #: the config snapshot the handler took (None until it took one): the trace reads it
    config: Config | None = None
    tenant: Tenant | None = None
    model: str | None = None
    upstream: str | None = None
    stream: bool = False
    status: int = 0
    outcome: str = "ok"
    error: str | None = None
    ttfb: float | None = None  # a stream's arrival to its first data line written (relay.stream)
    retries: int = 0
    queue_wait: float | None = None
    usage: Usage | None = None  # set once an upstream answered
    translated: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # x-ratelimit-* for the answer
    midstream_error: bool = False  # failed after the first byte
    attempts: list[Attempt] = field(default_factory=list)  # every upstream try, in order
    charged: bool = False  # an upstream answered and its usage was charged
    cost_micros: int | None = None  # what it cost (None: not charged, or its model has no price)
    charged_model: str | None = None  # the model it was charged at (the answering attempt's)
    key_id: str | None = None  # which of the tenant's keys (auth.Authenticator.identify)
    tags: tuple[str, ...] = ()  # x-gateway-tags: the log line and spend rows, never metric labels


def _short(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_LOGGED:
        return value
    return value[:MAX_LOGGED] + f"...({len(value)} chars)"


def tell(record: Record, metrics: Metrics, logger: FilteringBoundLogger) -> None:
    """Count and log the request once, whatever way it ended. The labels and their children
    come from the metrics' `Series` of the request's names and the line is rendered in one
    pass (`info_line`): this runs per request."""
    duration = time.perf_counter() - record.started
    tenant = record.tenant.name if record.tenant else None
    series = metrics.series(tenant, record.model, record.upstream)
    status = record.status
    series.request(record.route, status).inc()
    cost, unpriced = _count(record, series, duration)
    if record.outcome == "client_disconnected":
        series.client_disconnects.inc()
    if status in (400, 401, 404, 413):
        metrics.child(metrics.client_errors, str(status)).inc()
    fields = answer_fields(record, duration, cost, unpriced)
    fields["stream"], fields["status"] = record.stream, status
    if record.translated:
        fields["translated"] = True
    if record.tags:
        fields["tags"] = list(record.tags)
    if record.queue_wait is not None:
        fields["queue_wait_ms"] = round(record.queue_wait * 1000, 3)
    info_line(logger, "request", fields)


def count_answer(record: Record, metrics: Metrics, duration: float) -> tuple[float | None, bool]:
    """The metrics of what an answer used and how it streamed (tokens, cost, TTFB, duration,
    output rate, a mid-stream error): a request's, or a resumable stream's generation's.
    Returns its cost in USD (None: not charged or unpriced) and whether it was unpriced."""
    series = metrics.series(record.tenant.name if record.tenant else None, record.model, record.upstream)
    return _count(record, series, duration)


def _count(record: Record, series: Series, duration: float) -> tuple[float | None, bool]:
    usage = record.usage
    if usage is not None:
        series.prompt_tokens.inc(usage.prompt_tokens)
        series.completion_tokens.inc(usage.completion_tokens)
    cost = micros_to_usd(record.cost_micros) if record.cost_micros is not None else None
    unpriced = record.charged and cost is None  # a model no `[prices]` pattern matches: zero
    if cost is not None:
        series.cost.inc(cost)
    elif unpriced:
        series.unpriced.inc()
    # Both histograms count the streams whose first data line reached the client, once each,
    # at their end however it came (done, an error event, drain's stop, the client gone): so
    # their counts agree. A stream that ended before any data line (an error event after
    # heartbeats, a client gone while waiting) is in neither, like a request that never streamed.
    if record.ttfb is not None:
        series.ttfb.observe(record.ttfb)
        if record.stream:
            series.stream_duration.observe(duration)
            # As `llm-gateway bench` and the origin story count it: tokens / (total - TTFB).
            generating = duration - record.ttfb
            if usage is not None and usage.completion_tokens > 0 and generating > 0:
                series.output_rate.observe(usage.completion_tokens / generating)
    if record.midstream_error:
        series.midstream_errors.inc()
    return cost, unpriced


def answer_fields(record: Record, duration: float, cost: float | None, unpriced: bool) -> dict[str, Any]:
    """The log line's fields every answer has (a request's line, a generation's line)."""
    usage = record.usage
    fields: dict[str, Any] = {
        "request_id": record.request_id,
        "tenant": record.tenant.name if record.tenant else None,
        "route": record.route,
        "model": _short(record.model),
        "upstream": record.upstream,
        "outcome": record.outcome,
        "ttfb_ms": round(record.ttfb * 1000, 3) if record.ttfb is not None else None,
        "duration_ms": round(duration * 1000, 3),
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "usage_reported": usage.reported if usage else False,
        "retries": record.retries,
        # An unpriced model costs zero, and says so.
        "cost_usd": (cost or 0.0) if record.charged else None,
    }
    if record.attempts:
        fields["attempts"] = [attempt.fields() for attempt in record.attempts]
    if unpriced:
        fields["unpriced"] = True
    if record.error:
        fields["error"] = _short(record.error)
    return fields
