"""`llm-gateway bench`: it runs against the gateway and the mock and reports sane figures.

Tiny workloads only: these check counts, ordering and error accounting, never speed
(speed belongs in bench/side_by_side.py).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.bench import Sample, chat_url, error_message, format_report, percentiles, summarize
from tests._proc import run_module
from tests.conftest import CLIENT_KEY, REPO, Gateway, Mock

WORDS = 12  # the `mock` fixture's answer length: one content chunk per word


async def bench(url: str, *args: str, key: str = CLIENT_KEY) -> tuple[int, str, str]:
    """Run the real command in a subprocess (its own event loop); (status, stdout, stderr)."""
    status, out, err = await run_module("gateway", "bench", "--url", url, "--key", key, *args,
                                        cwd=REPO, timeout=60)
    return status, out.decode(), err.decode()


async def bench_json(url: str, *args: str, key: str = CLIENT_KEY) -> tuple[int, dict[str, Any]]:
    status, out, err = await bench(url, "--json", *args, key=key)
    assert "[#" not in err  # no progress bar when stderr is not a terminal
    report: dict[str, Any] = orjson.loads(out)
    return status, report


def assert_ordered(stats: dict[str, float | None]) -> None:
    values = [stats[k] for k in ("min", "p50", "p90", "p99", "max")]
    numbers = [v for v in values if v is not None and v >= 0]
    assert numbers == values and numbers == sorted(numbers), stats


async def test_bench_through_the_gateway_reports_sane_figures(gateway: Gateway) -> None:
    status, report = await bench_json(gateway.url(), "--requests", "6", "--concurrency", "2")
    assert status == 0
    assert report["requests"] == report["ok"] == 6
    assert report["concurrency"] == 2
    assert report["errors"] == {}
    assert report["tokens"] == 6 * WORDS
    for name in ("ttfb_ms", "total_ms", "request_tokens_per_second"):
        assert_ordered(report[name])
    assert report["ttfb_ms"]["p50"] <= report["total_ms"]["p50"]
    assert report["ttfb_ms"]["max"] <= report["total_ms"]["max"]
    assert report["requests_per_second"] > 0
    assert report["tokens_per_second"] > 0
    assert report["wall_seconds"] > 0
    assert [r["status"] for r in gateway.request_logs()] == [200] * 6


async def test_bench_with_a_wrong_key_counts_errors_by_status(gateway: Gateway) -> None:
    status, report = await bench_json(gateway.url(), "--requests", "6", "--concurrency", "2",
                                      key="not-a-key")
    assert status == 1
    assert report["ok"] == 0
    assert report["errors"] == {"401": 6}
    assert report["error_messages"] == {"401": "invalid API key"}
    assert report["requests_per_second"] is None  # refusals per second are not a throughput
    assert report["tokens"] == 0
    assert report["ttfb_ms"]["p50"] is None


async def test_bench_with_a_wrong_key_says_why_and_that_nothing_succeeded(gateway: Gateway) -> None:
    status, out, _ = await bench(gateway.url(), "--requests", "4", "--concurrency", "2",
                                 key="not-a-key")
    assert status == 1
    lines = out.splitlines()
    assert lines[-2] == "ok 0/4, errors: 401: 4 (invalid API key)"
    assert lines[-1].startswith("no request succeeded (4 of 4 failed): no throughput to report; wall ")


@pytest.mark.parametrize("ending", ["crlf", "cr", "fragment"])
async def test_bench_counts_every_chunk_whatever_the_line_endings(mock: Mock, ending: str) -> None:
    status, report = await bench_json(mock.url, "--requests", "2", "--concurrency", "2",
                                      "--model", f"mock-1+{ending}")
    assert (status, report["ok"], report["errors"]) == (0, 2, {})
    assert report["tokens"] == 2 * WORDS


async def test_bench_runs_against_the_mock_directly_with_or_without_v1(mock: Mock) -> None:
    for url in (mock.url, mock.url + "/v1", mock.url + "/v1/"):
        status, report = await bench_json(url, "--requests", "3", "--concurrency", "3")
        assert (status, report["ok"], report["tokens"]) == (0, 3, 3 * WORDS), url


async def test_a_stream_cut_short_is_an_error_not_a_success(gateway: Gateway) -> None:
    status, report = await bench_json(gateway.url(), "--requests", "2", "--concurrency", "2",
                                      "--model", "mock-1+drop=3")
    assert status == 1
    assert report["ok"] == 0
    assert report["errors"] == {"stream_error": 2}  # the gateway's error event, then the end
    assert report["tokens"] == 2 * 3
    assert report["requests_per_second"] is None
    message = report["error_messages"]["stream_error"]
    assert message == gateway_error_event_message(gateway)


def gateway_error_event_message(gateway: Gateway) -> str:
    """The message of the error event the gateway logged for the cut stream."""
    errors = {line.get("error") for line in gateway.request_logs()}
    assert len(errors) == 1, errors
    found = errors.pop()
    assert isinstance(found, str)
    return found


async def test_a_connection_cut_mid_stream_is_a_connection_error_with_its_cause(mock: Mock) -> None:
    status, report = await bench_json(mock.url, "--requests", "1", "--concurrency", "1",
                                      "--model", "mock-1+drop=2")
    assert status == 1
    assert report["errors"] == {"connection": 1}
    assert report["error_messages"]["connection"].split(":")[0] == "ClientPayloadError"
    assert report["tokens"] == 2


async def test_bench_prints_a_table_by_default(gateway: Gateway) -> None:
    status, out, _ = await bench(gateway.url(), "--requests", "4", "--concurrency", "2")
    assert status == 0
    lines = out.splitlines()
    assert lines[1].split() == ["per", "request", "p50", "p90", "p99"]
    assert [line.split()[0] for line in lines[2:5]] == ["TTFB", "total", "tokens/s"]
    assert "ok 4/4, errors: none" in out
    assert "requests/s" in out


async def test_bench_refuses_a_concurrency_of_zero(gateway: Gateway) -> None:
    status, _, err = await bench(gateway.url(), "--requests", "4", "--concurrency", "0")
    assert status == 2
    assert "--concurrency" in err


@pytest.mark.parametrize(("url", "expected"), [
    ("http://h:1", "http://h:1/v1/chat/completions"),
    ("http://h:1/", "http://h:1/v1/chat/completions"),
    ("http://h:1/v1", "http://h:1/v1/chat/completions"),
    ("http://h:1/v1/", "http://h:1/v1/chat/completions"),
    ("http://h:1/openai/v1", "http://h:1/openai/v1/chat/completions"),
])
def test_chat_url_takes_a_base_url_with_or_without_v1(url: str, expected: str) -> None:
    assert chat_url(url) == expected


def test_percentiles_are_nearest_rank() -> None:
    stats = percentiles([float(x) for x in range(100, 0, -1)])
    assert (stats["p50"], stats["p90"], stats["p99"]) == (50.0, 90.0, 99.0)
    assert (stats["min"], stats["max"], stats["mean"]) == (1.0, 100.0, 50.5)
    assert percentiles([]) == dict.fromkeys(("p50", "p90", "p99", "min", "max", "mean"))


def test_summary_counts_errors_by_kind_and_rates_only_successes() -> None:
    samples = [Sample(None, 0.01, 0.11, 10), Sample("429"), Sample("429"), Sample("connection")]
    report = summarize(samples, 2.0, url="u", model="m", concurrency=2)
    assert report["ok"] == 1 and report["requests"] == 4
    assert report["errors"] == {"429": 2, "connection": 1}
    assert report["request_tokens_per_second"]["p50"] == pytest.approx(100.0)
    assert report["requests_per_second"] == 2.0


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"error": {"message": "invalid API key", "type": "authentication_error"}}', "invalid API key"),
    (b'{"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}', "slow down"),
    (b'{"error": "plain"}', "plain"),
    (b"upstream said no", "upstream said no"),
    (b"", None),
])
def test_error_message_reads_either_dialect_or_the_text(body: bytes, expected: str | None) -> None:
    assert error_message(body) == expected


def test_first_message_per_kind_is_kept_and_shown_in_the_table() -> None:
    samples = [Sample("429", message="first"), Sample("429", message="second"),
               Sample(None, 0.01, 0.11, 10)]
    report = summarize(samples, 1.0, url="u", model="m", concurrency=1)
    assert report["error_messages"] == {"429": "first"}
    assert format_report(report).splitlines()[5] == "ok 1/3, errors: 429: 2 (first)"
