"""`llm-gateway keys create|list|revoke` and `llm-gateway spend` against a running gateway
(real socket, the CLI as a subprocess): JSON on stdout for scripts, one-line errors on
stderr with exit 1, a missing admin key exit 2."""

from __future__ import annotations

import json

import pytest

from gateway.auth import hash_key
from tests._proc import eventually, free_port, run_module
from tests.conftest import REPO, GatewayFactory, auth, chat_body

ADMIN_KEY = "gw-admin-cli-secret"


async def cli(*args: str) -> tuple[int, str, str]:
    code, out, err = await run_module("gateway", *args, cwd=REPO, timeout=60)
    return code, out.decode(), err.decode()


async def test_keys_and_spend_from_the_command_line(start_gateway: GatewayFactory,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = await start_gateway(server={"admin_key_sha256": hash_key(ADMIN_KEY)},
                                  prices={"mock-*": {"input": 1.0, "output": 2.0}})
    url = gateway.url("").rstrip("/")
    common = ["--url", url, "--admin-key", ADMIN_KEY]
    code, out, err = await cli("keys", "create", "tenant-a", "--label", "from-cli", *common)
    assert code == 0, err
    issued = json.loads(out)
    assert issued["tenant"] == "tenant-a" and issued["label"] == "from-cli" and issued["key"].startswith("gk-")
    response = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=False),
                                         headers={**auth(issued["key"]), "x-gateway-tags": "cli"})
    assert response.status == 200
    monkeypatch.setenv("LLM_GATEWAY_ADMIN_KEY", ADMIN_KEY)  # the key from the environment
    monkeypatch.setenv("LLM_GATEWAY_URL", url)
    code, out, err = await cli("keys", "list", "tenant-a")
    assert code == 0, err
    listed = json.loads(out)["data"]
    assert [k["id"] for k in listed] == [issued["id"]] and issued["key"] not in out

    async def tagged() -> list[dict[str, object]]:
        code, out, _ = await cli("spend", "--group-by", "tag")
        return [r for r in json.loads(out)["data"] if r["tag"] == "cli"] if code == 0 else []

    rows = await eventually(tagged, timeout=10, interval=0.2, what="the request's spend row")
    assert rows[0]["requests"] == 1
    code, out, _ = await cli("spend", "--group-by", "key", "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "day,key_id,requests,prompt_tokens,completion_tokens,cost_usd"
    assert issued["id"] in out
    code, out, err = await cli("keys", "revoke", issued["id"])
    assert code == 0 and json.loads(out) == {"id": issued["id"], "revoked": True}, err
    again = await gateway.client.post("/v1/chat/completions", json=chat_body(stream=False),
                                      headers=auth(issued["key"]))
    assert again.status == 401
    code, out, err = await cli("keys", "revoke", issued["id"])
    assert code == 1 and out == "" and err.strip() == f"llm-gateway: 404: no key {issued['id']!r}"
    code, _, err = await cli("keys", "create", "nobody")
    assert code == 1 and err.strip() == "llm-gateway: 404: no tenant 'nobody'"
    code, _, err = await cli("spend", "--admin-key", "wrong")
    assert code == 1 and err.startswith("llm-gateway: 401: ")


async def test_the_command_line_without_a_key_or_a_gateway_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_GATEWAY_ADMIN_KEY", raising=False)
    code, _, err = await cli("keys", "list", "t", "--url", "http://127.0.0.1:9")
    assert code == 2 and "no admin key" in err
    code, _, err = await cli("spend", "--url", f"http://127.0.0.1:{free_port()}", "--admin-key", "k")
    assert code == 1 and err.startswith("llm-gateway: can't reach http://127.0.0.1:")
    assert len(err.strip().splitlines()) == 1
