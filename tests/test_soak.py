"""The soak run (`bench/soak.py`): 30 s of mixed traffic through a gateway subprocess leaves
no fd, socket or active stream behind; and its leak check itself, fed made-up counts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from bench.soak import FD_MARGIN, problems, summarize_outcomes
from bench.soak_traffic import kinds, schedule
from tests._proc import run_module
from tests.conftest import REPO


async def run_soak(*args: str) -> tuple[int, dict[str, Any]]:
    status, out, _ = await run_module("bench.soak", "--json", *args, cwd=REPO, timeout=150)
    report: dict[str, Any] = orjson.loads(out)
    return status, report


@pytest.mark.timeout(180)
async def test_thirty_seconds_of_mixed_traffic_leak_nothing() -> None:
    status, report = await run_soak("--seconds", "30")
    assert report["problems"] == []
    assert status == 0
    assert report["active_streams"] == 0
    start, end = report["start"], report["end"]
    assert end["fds"] <= start["fds"] + FD_MARGIN
    assert end["tcp"] <= start["tcp"] + FD_MARGIN
    by_kind = report["outcomes"]["by_kind"]
    assert set(by_kind) == {k.name for k in kinds(1.5)}  # every kind of the mix was sent
    assert by_kind["abort"] == {"aborted": by_kind["abort"]["aborted"]}
    assert by_kind["status_503"] == {"http_502": by_kind["status_503"]["http_502"]}
    assert report["outcomes"]["served_ok"] > 0
    assert len(report["rss_mib"]) >= 20  # sampled about once a second


def clean_run(**changes: Any) -> dict[str, Any]:
    outcomes = summarize_outcomes(Counter({("stream", "ok"): 5, ("abort", "aborted"): 2}), kinds(1.5))
    return {"start": {"fds": 30, "tcp": 17, "rss": 1}, "end": {"fds": 30, "tcp": 17, "rss": 1},
            "active_streams": 0.0, "outcomes": outcomes, **changes}


def test_leak_check_passes_a_clean_run() -> None:
    assert problems(clean_run()) == []


def test_leak_check_names_fds_sockets_and_streams_left_behind() -> None:
    leaked = clean_run(end={"fds": 30 + FD_MARGIN + 1, "tcp": 17 + FD_MARGIN + 5, "rss": 1},
                       active_streams=2.0)
    assert problems(leaked) == [
        f"fds: {31 + FD_MARGIN} at the end vs 30 at the start (margin {FD_MARGIN})",
        f"tcp: {22 + FD_MARGIN} at the end vs 17 at the start (margin {FD_MARGIN})",
        "gateway_active_streams is 2 after traffic stopped",
    ]


def test_a_request_that_must_succeed_and_did_not_is_a_problem() -> None:
    outcomes = summarize_outcomes(Counter({("stream", "ok"): 5, ("stream", "http_500"): 1,
                                           ("drop", "stream_error"): 3}), kinds(1.5))
    assert outcomes["errors"] == {"http_500": 1, "stream_error": 3}
    assert problems(clean_run(outcomes=outcomes)) == ["stream requests must succeed: {'http_500': 1}"]


def test_schedule_sends_each_kind_as_often_as_its_weight() -> None:
    mix = kinds(1.5)
    total = sum(k.weight for k in mix)
    order = schedule(mix)
    counts = Counter(next(order).name for _ in range(total * 3))
    assert counts == {k.name: k.weight * 3 for k in mix}
