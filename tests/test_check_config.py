"""`llm-gateway check-config`: a valid config prints its tenants, routes and prices as tables
(exit 0); a bad one prints its one line and exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from tests.conftest import REPO, UPSTREAM_ENV, raw_config, write_toml


def config_file(tmp_path: Path, **sections: object) -> Path:
    raw = raw_config("http://127.0.0.1:9", **sections)
    raw["routes"] = [{"model": "chat-default", "targets": ["mock:gpt-4o-mini", "mock-anthropic:claude-3-haiku"],
                      "strategy": "balance"}]
    path = write_toml(tmp_path / "gateway.toml", raw)
    with path.open("a") as toml:
        toml.write('[prices]\n"gpt-4o-mini" = { input = 0.15, output = 0.6 }\n'
                   '"claude-*" = { input = 1.0, output = 5.0, cache_read = 0.1 }\n')
    return path


def rows(output: str, title: str) -> list[list[str]]:
    """The rows of one printed table, cells split on runs of two or more spaces."""
    block = output.split(title + "\n", 1)[1].split("\n\n", 1)[0]
    return [[cell for cell in line.split("  ") if cell.strip()] for line in block.splitlines()[2:]]


def test_check_config_prints_tenants_routes_and_prices(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in UPSTREAM_ENV.items():
        monkeypatch.setenv(name, value)
    path = config_file(tmp_path)
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{path}: ok"
    routes = [[c.strip() for c in r] for r in rows(out, "routes (first match wins)")]
    assert routes[0] == ["chat-default", "mock:gpt-4o-mini, mock-anthropic:claude-3-haiku", "balance", "-", "no"]
    assert ["gpt-*", "mock", "fallback", "-", "no"] in routes
    assert ["claude-*", "mock-anthropic", "fallback", "-", "no"] in routes
    tenants = [[c.strip() for c in r] for r in rows(out, "tenants")]
    assert [t[0] for t in tenants] == ["tenant-a", "tenant-b"]
    assert tenants[0][1:4] == ["600", "200000", "0"]
    prices = [[c.strip() for c in r] for r in rows(out, "prices (USD per 1M tokens, first match wins)")]
    assert prices == [["gpt-4o-mini", "0.15", "0.6", "-", "-"], ["claude-*", "1", "5", "0.1", "-"]]


def test_check_config_exits_2_with_the_one_line_problem(tmp_path: Path) -> None:
    raw = raw_config("http://127.0.0.1:9", tenants=[{"name": "x", "key_sha256": "nope"}])
    path = write_toml(tmp_path / "bad.toml", raw)
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
        capture_output=True, text=True, cwd=REPO, timeout=60, env={"PATH": "/usr/bin:/bin", **UPSTREAM_ENV})
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{path}: tenants[0].key_sha256")
