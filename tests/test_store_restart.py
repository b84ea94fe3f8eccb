"""The SQLite store across a restart of a real `llm-gateway serve`: a runtime tenant, its key
and its spend rows are all still there; a store that can't be opened stops the start with one
line and exit status 2 (SQLite in a missing directory, Redis on a closed port)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from gateway.auth import hash_key
from tests._proc import eventually, free_port, spawn
from tests._store import ADMIN_KEY, call
from tests.conftest import (
    UPSTREAM_ENV,
    Mock,
    Process,
    chat_body,
    gateway_argv,
    raw_config,
    start_gateway_process,
    write_toml,
)


def priced_config(mock: Mock, tmp_path: Path, **sections: Any) -> tuple[Path, int]:
    """A test config with the admin key and a price for the mock's models (the TOML writer
    has no inline tables, so [prices] is appended as text)."""
    port = free_port()
    server = {"host": "127.0.0.1", "port": port, "admin_key_sha256": hash_key(ADMIN_KEY)}
    path = write_toml(tmp_path / "gw.toml", raw_config(mock.url, server=server, **sections))
    with path.open("a") as file:
        file.write('\n[prices]\n"mock-*" = { input = 1.0, output = 2.0 }\n')
    return path, port


async def test_a_runtime_tenant_its_key_and_its_spend_survive_a_restart(mock: Mock, tmp_path: Path) -> None:
    config, port = priced_config(mock, tmp_path)
    first = await start_gateway_process(config, tmp_path, port, name="first")
    try:
        key = await _before_restart(first)
    finally:
        assert await first.stop() == 0  # SIGTERM: drain writes the pending spend row
    assert (tmp_path / "gateway-state.db").exists()  # next to the config file
    second = await start_gateway_process(config, tmp_path, port, name="second")
    try:
        await _after_restart(second, key)
    finally:
        await second.stop()


async def _before_restart(first: Process) -> dict[str, Any]:
    """A runtime tenant, its key, and a tagged request with it."""
    status, _ = await call("POST", f"{first.url}/admin/tenants", ADMIN_KEY, {"name": "kept", "priority": 3})
    assert status == 201
    status, key = await call("POST", f"{first.url}/admin/tenants/kept/keys", ADMIN_KEY, {"label": "l"})
    assert status == 201
    status, _ = await call("POST", f"{first.url}/v1/chat/completions", key["key"], chat_body(stream=False),
                           {"x-gateway-tags": "feature-a"})
    assert status == 200
    return dict(key)


async def _after_restart(second: Process, key: dict[str, Any]) -> None:
    status, _ = await call("POST", f"{second.url}/v1/chat/completions", key["key"], chat_body(stream=False))
    assert status == 200
    status, listed = await call("GET", f"{second.url}/admin/tenants", ADMIN_KEY)
    kept = next(t for t in listed["tenants"] if t["name"] == "kept")
    assert kept["source"] == "runtime" and kept["priority"] == 3
    status, keys = await call("GET", f"{second.url}/admin/tenants/kept/keys", ADMIN_KEY)
    assert [k["id"] for k in keys["data"]] == [key["id"]] and keys["data"][0]["label"] == "l"
    assert keys["data"][0]["last_used_at"] is not None  # written at the first use, before the restart

    async def tagged() -> list[dict[str, Any]]:
        _, spend = await call("GET", f"{second.url}/admin/spend?group_by=tag", ADMIN_KEY)
        return [r for r in spend["data"] if r["tag"] == "feature-a"]

    rows = await eventually(tagged, timeout=5, what="the row written before the restart")
    assert rows[0]["requests"] == 1 and rows[0]["cost_usd"] > 0


async def _exit_of(argv: list[str], log: Path) -> tuple[int, str]:
    child = spawn(argv, log, env={**UPSTREAM_ENV, "PATH": "/usr/bin:/bin"})
    code = await child.exited(timeout=30)
    return code, log.read_text()


async def test_a_store_that_cannot_be_opened_stops_the_start_with_one_line_and_exit_2(
        mock: Mock, tmp_path: Path) -> None:
    import sys

    server = {"host": "127.0.0.1", "port": free_port(), "admin_key_sha256": hash_key(ADMIN_KEY)}
    cases = {
        "sqlite": {"backend": "sqlite", "path": "no-such-dir/state.db"},
        "redis": {"backend": "redis"},
    }
    for name, store in cases.items():
        raw = raw_config(mock.url, server=server, store=store,
                         ratelimit={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
        config = write_toml(tmp_path / f"{name}.toml", raw)
        argv = [sys.executable if a == gateway_argv(config)[0] else a for a in gateway_argv(config)]
        code, output = await _exit_of(argv, tmp_path / f"{name}.log")
        lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert code == 2, output
        errors = [line for line in lines if line.get("level") == "error"]
        assert [e["event"] for e in errors] == ["store_unavailable"], output
        assert ("no-such-dir" if name == "sqlite" else "can't be reached") in errors[0]["error"]
        assert "Traceback" not in output
    await asyncio.sleep(0)


async def test_a_reload_keeps_runtime_tenants_and_their_keys(mock: Mock, tmp_path: Path) -> None:
    config, port = priced_config(mock, tmp_path)
    gateway = await start_gateway_process(config, tmp_path, port)
    try:
        assert (await call("POST", f"{gateway.url}/admin/tenants", ADMIN_KEY, {"name": "rt"}))[0] == 201
        _, key = await call("POST", f"{gateway.url}/admin/tenants/rt/keys", ADMIN_KEY, {})
        config.write_text(config.read_text().replace("priority = 10", "priority = 11"))
        status, body = await call("POST", f"{gateway.url}/admin/reload", ADMIN_KEY)
        assert status == 200, body
        status, _ = await call("POST", f"{gateway.url}/v1/chat/completions", key["key"], chat_body(stream=False))
        assert status == 200
        _, listed = await call("GET", f"{gateway.url}/admin/tenants", ADMIN_KEY)
        by_name = {t["name"]: t for t in listed["tenants"]}
        assert by_name["rt"]["source"] == "runtime" and by_name["tenant-b"]["priority"] == 11
    finally:
        await gateway.stop()


async def test_a_second_process_on_the_same_sqlite_file_refuses_a_revoked_key_within_1s(
        mock: Mock, tmp_path: Path) -> None:
    """Workers on one host share the file: they learn of a change from its version."""
    shared = str(tmp_path / "shared-state.db")
    processes = []
    try:
        for name in ("one", "two"):
            port = free_port()
            server = {"host": "127.0.0.1", "port": port, "admin_key_sha256": hash_key(ADMIN_KEY)}
            config = write_toml(tmp_path / f"{name}.toml",
                                raw_config(mock.url, server=server, store={"path": shared}))
            processes.append(await start_gateway_process(config, tmp_path, port, name=name))
        one, two = processes
        assert (await call("POST", f"{one.url}/admin/tenants", ADMIN_KEY, {"name": "both"}))[0] == 201
        _, key = await call("POST", f"{one.url}/admin/tenants/both/keys", ADMIN_KEY, {})

        async def status_on_two(expected: int) -> bool:
            status, _ = await call("POST", f"{two.url}/v1/chat/completions", key["key"], chat_body(stream=False))
            return status == expected

        await eventually(lambda: status_on_two(200), timeout=1.0, interval=0.02, what="served on two")
        assert (await call("DELETE", f"{one.url}/admin/keys/{key['id']}", ADMIN_KEY))[0] == 204
        await eventually(lambda: status_on_two(401), timeout=1.0, interval=0.02, what="refused on two")
    finally:
        for process in processes:
            await process.stop()
