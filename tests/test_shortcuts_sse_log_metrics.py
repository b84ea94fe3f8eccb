"""The hot-path shortcuts say exactly what the slow paths they replaced said: the SSE check,
the request log line, cached metric children and the upstream headers."""

from __future__ import annotations

import io

import orjson
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.dialects import DIALECTS
from gateway.logs import info_line, make_logger
from gateway.metrics import Metrics
from gateway.sse import sse_prefix
from gateway.upstream.headers import DROPPED_HEADERS, upstream_headers

from .conftest import UPSTREAM_KEY, make_config

_FIELDS = (b"data:", b"data", b"event:", b"event", b"id:", b"id", b"retry:", b":")


def reference_sse_prefix(complete: bytes) -> int:
    """The line-by-line check the one-regex `sse_prefix` replaced."""
    offset = 0
    for line in complete.splitlines(keepends=True):
        if line.startswith(_FIELDS) or not line.strip(b"\r\n"):
            offset += len(line)
        else:
            return offset
    return offset


_PIECES = st.sampled_from([b"data: {}", b"data:x", b"data", b"event: e", b"id: 1", b"idle", b"retry: 5",
                           b"retry", b": ping", b"\n", b"\r", b"\r\n", b"<html>", b"x", b" data:",
                           b"\x00\xff", b"\x0b", b"database", b"\n\n", b"data: x\n\n", b"\n\ndata:"])


@given(st.lists(_PIECES, max_size=20))
def test_sse_prefix_matches_the_line_by_line_check(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert sse_prefix(data) == reference_sse_prefix(data)


def test_sse_prefix_examples() -> None:
    assert sse_prefix(b"data: {}\n\n") == 10
    assert sse_prefix(b"data: 1\n\ndata: 2\r\n\r\n: ping\n\n") == 28
    assert sse_prefix(b"data: 1\n\n<html>\n") == 9
    assert sse_prefix(b"<html>\ndata: 1\n\n") == 0
    assert sse_prefix(b"") == 0
    assert sse_prefix(b"data: 1\n\ndata: 2\n\n") == 18
    assert sse_prefix(b"data: 1\n\ndata: 2\nbad\n\n") == 17
    assert sse_prefix(b"data: 1\n\n\n\nbad\n\n") == 11


def test_info_line_writes_what_the_processor_chain_writes() -> None:
    fields = {"request_id": "r1", "tenant": None, "status": 200, "ttfb_ms": 1.25,
              "attempts": [{"upstream": "u", "duration_ms": 2.0}], "model": "m\u00e9"}
    for bind in ({}, {"worker": 3}):
        out = io.StringIO()
        logger = make_logger(out).bind(**bind)
        logger.info("request", **dict(fields))
        info_line(logger, "request", dict(fields))
        chain, fast = (orjson.loads(line) for line in out.getvalue().splitlines())
        assert list(fast) == list(chain)
        assert fast["timestamp"].endswith("Z") and len(fast["timestamp"]) == len(chain["timestamp"])
        chain.pop("timestamp"), fast.pop("timestamp")
        assert fast == chain == {**bind, **fields, "event": "request", "level": "info"}


def test_info_line_respects_the_level() -> None:
    out = io.StringIO()
    info_line(make_logger(out, level=30), "request", {"a": 1})
    info_line(make_logger(out, level=20), "request", {"a": 2})
    assert [orjson.loads(line)["a"] for line in out.getvalue().splitlines()] == [2]


def test_metric_children_are_the_labelled_ones() -> None:
    metrics = Metrics(make_config("http://127.0.0.1:9/v1"))
    child = metrics.child(metrics.requests, "t", "m", "chat", "200")
    assert child is metrics.requests.labels("t", "m", "chat", "200")
    assert metrics.child(metrics.requests, "t", "m", "chat", "200") is child
    assert metrics.child(metrics.requests, "t", "m", "chat", "500") is not child
    child.inc(2)
    assert metrics.registry.get_sample_value(
        "gateway_requests_total", {"tenant": "t", "model": "m", "route": "chat", "status": "200"}) == 2


def test_upstream_headers_drop_exactly_the_listed_names() -> None:
    config = make_config("http://127.0.0.1:9/v1")
    upstream = config.upstreams[0]
    client = CIMultiDictProxy(CIMultiDict([
        ("Host", "gw"), ("Authorization", "Bearer client"), ("x-stainless-lang", "python"),
        ("Cookie", "a=b"), ("anthropic-beta", "one"), ("anthropic-beta", "two"),
        ("Accept-Encoding", "gzip"), ("X-Request-ID", "theirs"), ("Content-Length", "5")]))
    headers = upstream_headers(upstream, DIALECTS[upstream.dialect], client, "rid", True)
    kept = [(k, v) for k, v in headers.items() if k.lower() not in {
        "authorization", "x-api-key", "content-type", "x-request-id", "accept-encoding"}
        and k.lower() not in {n.lower() for n in DIALECTS[upstream.dialect].default_headers}]
    assert kept == [("x-stainless-lang", "python"), ("anthropic-beta", "one"), ("anthropic-beta", "two")]
    assert headers["x-request-id"] == "rid"
    assert headers["Accept-Encoding"] == "identity"
    assert headers["Content-Type"] == "application/json"
    assert headers.getall("Authorization") == [f"Bearer {UPSTREAM_KEY}"]
    assert len(headers) == len(kept) + 4 + len(DIALECTS[upstream.dialect].default_headers)
    assert DROPPED_HEADERS == {n.lower() for n in DROPPED_HEADERS}
