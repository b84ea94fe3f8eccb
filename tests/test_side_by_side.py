"""`bench/side_by_side.py --quick` as a smoke test: it runs end to end (mock, gateway, the bare
aiohttp floor, nginx when installed, the load client) and reports every row it promises.
No figure is checked against a threshold: speed is read from a run, never asserted here.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from bench.procs import find_binary
from tests._proc import run_module
from tests.conftest import REPO


@pytest.mark.timeout(300)  # the run's own bound is 240 s; a busy machine needs more than 60
async def test_the_quick_side_by_side_run_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    status, printed, _ = await run_module("bench.side_by_side", "--quick", "--json-out", str(out),
                                          cwd=REPO, timeout=240, merge_stderr=True)
    text = printed.decode()
    assert status == 0, text[-3000:]
    r = orjson.loads(out.read_bytes())
    assert "failed" not in r
    for target in ("direct", "gateway", "floor"):
        assert r["ttfb"]["1"][target]["ok"] > 0, target
    assert r["idle"]["heartbeat_on"]["1000"]["opened"] == 1000
    if find_binary("nginx") is not None or os.environ.get("CI"):
        assert "skipped" not in r["nginx_proxy"] and "skipped" not in r["nonstream"]
    assert "targets (issue 14" in text and "machine:" in text
    assert "issue 25: our own work over the aiohttp floor" in text
    if "skipped" not in r["nginx_proxy"]:  # issue 25's streams of 50 chunks, 1 and 50 at a time
        assert r["nginx_proxy"]["1 50ch"]["floor"]["ok"] > 0 and r["nginx_proxy"]["50 50ch"]["gateway"]["ok"] > 0
