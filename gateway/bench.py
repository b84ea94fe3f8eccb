"""`llm-gateway bench`: stream N chat completions at concurrency C and report, per request,
TTFB, total time and tokens/s as p50/p90/p99, plus errors by status and requests/s.

Works against the gateway, the mock upstream or any OpenAI-compatible server (`POST
{url}/v1/chat/completions` with `stream: true`; the URL may end in `/v1` or not).
Definitions (the same for every target, so runs compare):
- TTFB: request sent -> first body byte of a 200 answer (the first SSE bytes).
- total: request sent -> end of the stream.
- tokens: content chunks received (`data:` lines whose delta carries non-empty content).
- tokens/s (per request): tokens / (total - TTFB), the rate once the answer started.
- errors: HTTP status of a refused request, `stream_error` for an error event or a stream
  that ended without `[DONE]`, `connection` / `timeout` for transport failures; the first
  message seen for each kind (from the JSON error body or the error event) is kept.
- lines: SSE lines end at CRLF, LF or CR (`gateway.sse.LineSplitter`, as the relay splits).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from .errors import LineTooLong
from .sse import LineSplitter

#: Bounds on one request, so a wedged server ends the run instead of hanging it.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
#: An error message is cut to this many characters in the report.
MESSAGE_CHARS = 200


@dataclass(slots=True)
class Sample:
    """One request's outcome; times in seconds from the moment it was sent."""

    error: str | None = None  # None: a complete stream
    ttfb: float | None = None
    total: float = 0.0
    tokens: int = 0
    max_gap: float = 0.0  # longest wait between two reads of the body
    message: str | None = None  # what the error said, when it said anything


def chat_url(url: str) -> str:
    base = url.rstrip("/")
    return (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"


def _content_chunk(line: bytes) -> bool:
    """Does this `data:` line add answer text? A substring test for the common compact JSON,
    a parse only for lines that spell it differently."""
    if b'"content":"' in line:
        return b'"content":""' not in line
    if b'"content"' not in line:
        return False
    try:
        data = orjson.loads(line[5:])
        content = data["choices"][0]["delta"]["content"]
    except (orjson.JSONDecodeError, LookupError, TypeError):
        return False
    return isinstance(content, str) and bool(content)


def error_message(body: bytes) -> str | None:
    """The message of an error body or event in either dialect (`{"error": {"message"}}`,
    `{"type": "error", "error": {"message"}}`), else the body's text; None when empty."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:MESSAGE_CHARS] or None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:MESSAGE_CHARS]
    if isinstance(error, str):
        return error[:MESSAGE_CHARS]
    return body.decode("utf-8", "replace").strip()[:MESSAGE_CHARS] or None


def _error_event(line: bytes) -> str | None:
    """The message of a `data:` line that carries an error object, else None."""
    if b'"error"' not in line:
        return None
    try:
        data = orjson.loads(line[5:])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "error" not in data:
        return None
    return error_message(line[5:]) or "error event"


async def stream_one(session: aiohttp.ClientSession, url: str, body: bytes,
                     headers: dict[str, str]) -> Sample:
    sample = Sample()
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                sample.error = str(response.status)
                sample.message = error_message(await response.read())
                return sample
            splitter = LineSplitter()
            last = 0.0
            done = False
            async for data in response.content.iter_any():
                now = time.perf_counter()
                if sample.ttfb is None:
                    sample.ttfb = now - started
                else:
                    sample.max_gap = max(sample.max_gap, now - last)
                last = now
                for line in splitter.feed(data).splitlines():  # CRLF, LF and CR endings alike
                    if not line.startswith(b"data:"):
                        continue
                    if _content_chunk(line):
                        sample.tokens += 1
                    elif line.rstrip() in (b"data: [DONE]", b"data:[DONE]"):
                        done = True
                    elif (message := _error_event(line)) is not None and sample.error is None:
                        sample.error, sample.message = "stream_error", message
            if not done and sample.error is None:
                sample.error, sample.message = "stream_error", "the stream ended without [DONE]"
    except LineTooLong as exc:
        sample.error, sample.message = "stream_error", str(exc)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        sample.error, sample.message = "timeout", f"no byte for {READ_TIMEOUT:g} s"
    except aiohttp.ClientError as exc:
        sample.error, sample.message = "connection", f"{type(exc).__name__}: {exc}"[:MESSAGE_CHARS]
    sample.total = time.perf_counter() - started
    return sample


Progress = Callable[[int, int, int], None]  # (done, errors, total)


async def run(url: str, key: str, model: str, concurrency: int, requests: int,
              progress: Progress | None = None) -> dict[str, Any]:
    """Stream `requests` completions, `concurrency` at a time; the report as a dict."""
    target = chat_url(url)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
               "Accept": "text/event-stream"}
    samples: list[Sample] = []
    next_index = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < requests:
            index = next_index
            next_index += 1
            body = orjson.dumps({
                "model": model, "stream": True,
                "messages": [{"role": "user", "content": f"Benchmark request {index}: say hello."}],
            })
            sample = await stream_one(session, target, body, headers)
            samples.append(sample)
            if progress is not None:
                progress(len(samples), int(sample.error is not None), requests)

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:
        await asyncio.gather(*(worker(session) for _ in range(max(1, min(concurrency, requests)))))
    wall = time.perf_counter() - started
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return summarize(samples, wall, url=url, model=model, concurrency=concurrency, loop=loop)


def percentiles(values: list[float], scale: float = 1.0) -> dict[str, float | None]:
    """Nearest-rank p50/p90/p99 (and min, max, mean); None for all when there are no values."""
    ordered = sorted(values)
    n = len(ordered)

    def rank(p: float) -> float | None:
        return round(ordered[max(0, math.ceil(p / 100 * n) - 1)] * scale, 3) if n else None

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99),
            "min": rank(0), "max": rank(100),
            "mean": round(sum(ordered) / n * scale, 3) if n else None}


def summarize(samples: list[Sample], wall: float, **about: Any) -> dict[str, Any]:
    ok = [s for s in samples if s.error is None]
    rates = [s.tokens / (s.total - s.ttfb) for s in ok if s.ttfb is not None and s.total > s.ttfb]
    tokens = sum(s.tokens for s in samples)
    messages: dict[str, str] = {}
    for s in samples:  # the first message per kind, in the order the requests finished
        if s.error is not None and s.message is not None:
            messages.setdefault(s.error, s.message)
    return {
        **about,
        "requests": len(samples),
        "ok": len(ok),
        "errors": dict(sorted(Counter(s.error for s in samples if s.error is not None).items())),
        "error_messages": dict(sorted(messages.items())),
        "wall_seconds": round(wall, 4),
        # No rate when nothing succeeded: refusals per second are not a throughput.
        "requests_per_second": (round(len(samples) / wall, 2) if wall > 0 else 0.0) if ok else None,
        "tokens": tokens,
        "tokens_per_second": round(tokens / wall, 1) if wall > 0 else 0.0,
        "ttfb_ms": percentiles([s.ttfb for s in ok if s.ttfb is not None], 1000),
        "total_ms": percentiles([s.total for s in ok], 1000),
        "request_tokens_per_second": percentiles(rates),
        "max_gap_ms": round(max((s.max_gap for s in ok), default=0.0) * 1000, 3),
    }


def format_report(report: dict[str, Any]) -> str:
    def cell(value: float | None, unit: str) -> str:
        return "-" if value is None else f"{value:,.2f}{unit}"

    rows = [("TTFB", report["ttfb_ms"], " ms"), ("total", report["total_ms"], " ms"),
            ("tokens/s", report["request_tokens_per_second"], "")]
    messages = report.get("error_messages", {})
    errors = ", ".join(f"{k}: {v}" + (f" ({messages[k]})" if k in messages else "")
                       for k, v in report["errors"].items()) or "none"
    lines = [
        f"{report['requests']} requests, concurrency {report['concurrency']}, "
        f"model {report['model']} -> {report['url']}",
        f"{'per request':<12}{'p50':>14}{'p90':>14}{'p99':>14}",
        *(f"{name:<12}" + "".join(f"{cell(stats[p], unit):>14}" for p in ("p50", "p90", "p99"))
          for name, stats, unit in rows),
        f"ok {report['ok']}/{report['requests']}, errors: {errors}",
    ]
    if report["requests_per_second"] is None:
        lines.append(f"no request succeeded ({report['requests']} of {report['requests']} failed): "
                     f"no throughput to report; wall {report['wall_seconds']:.2f} s")
    else:
        lines.append(
            f"{report['requests_per_second']:,.2f} requests/s, {report['tokens']:,} tokens "
            f"({report['tokens_per_second']:,.1f} tokens/s overall), wall {report['wall_seconds']:.2f} s, "
            f"longest gap between reads {report['max_gap_ms']:,.1f} ms, loop {report.get('loop', '-')}")
    return "\n".join(lines)


class _Bar:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self) -> None:
        self.errors = 0
        self.drawn = 0.0

    def __call__(self, done: int, failed: int, total: int) -> None:
        self.errors += failed
        now = time.perf_counter()
        if done < total and now - self.drawn < 0.1:
            return
        self.drawn = now
        filled = int(30 * done / total) if total else 30
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"
                         f"  errors {self.errors}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run_bench(args: argparse.Namespace) -> int:
    """The `bench` command: exit status 0 when every request streamed to the end, else 1
    (also when none succeeded: then the report says so and gives no requests/s)."""
    if args.concurrency < 1 or args.requests < 1:
        print("llm-gateway bench: --concurrency and --requests must be at least 1", file=sys.stderr)
        return 2
    progress = _Bar() if sys.stderr.isatty() and not args.json else None
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop
    except ImportError:
        pass
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        report = runner.run(run(args.url, args.key, args.model, args.concurrency, args.requests,
                                progress))
    print(orjson.dumps(report).decode() if args.json else format_report(report))
    if args.json and not report["ok"]:
        print(f"llm-gateway bench: no request succeeded ({report['requests']} failed)", file=sys.stderr)
    return 0 if not report["errors"] else 1
