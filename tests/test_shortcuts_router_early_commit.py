"""Round three's shortcuts say what the paths they replaced said: the router's remembered
answers, the early commit that is one timer until a stream really is slow."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import routing
from gateway.errors import ModelNotFound
from gateway.relay.early import EarlyCommit
from gateway.routing import Plan, Router
from tests.conftest import make_config

MODELS = ["mock-1", "mock-9", "gpt-4o", "claude-3-haiku", "claude-x", "other", "fast", "fast-2"]


def answers(router: Router, tenant: Any, model: str, dialect: str | None) -> Plan | str:
    try:
        return router.route(tenant, model, dialect)
    except ModelNotFound as exc:
        return exc.message


def config() -> Any:
    return make_config(
        "http://127.0.0.1:9",
        routes=[{"model": "fast*", "targets": ["mock-anthropic:claude-3-haiku", "mock"]}],
        tenants=[{"name": "a", "key_sha256": "0" * 64, "models": ["mock-*", "fast*", "claude-*"]},
                 {"name": "b", "key_sha256": "1" * 64}])


def test_remembered_answers_equal_fresh_ones_per_tenant_and_dialect() -> None:
    cfg = config()
    warm = Router(cfg)
    for _ in range(2):  # the second pass answers from what the first one remembered
        for tenant in cfg.tenants:
            for model in MODELS:
                for dialect in (None, "openai", "anthropic"):
                    fresh = answers(Router(cfg), tenant, model, dialect)
                    assert answers(warm, tenant, model, dialect) == fresh


def test_remembered_answers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "CACHED_ANSWERS", 8)
    cfg = config()
    router = Router(cfg)
    tenant = cfg.tenants[1]  # no allow-list: every name is matched
    for i in range(100):
        assert router.route(tenant, f"mock-{i}").targets[0].model == f"mock-{i}"
        assert len(router._plans) <= 8 and len(router._allowed) <= 8
    with pytest.raises(ModelNotFound):
        router.route(cfg.tenants[0], "gpt-4o")  # not on tenant a's list, remembered or not


class _Request:
    """What `EarlyCommit` needs of a request until it sends headers: nothing."""


async def test_a_stream_that_answers_in_time_makes_no_task_and_sends_nothing() -> None:
    loop = asyncio.get_running_loop()
    before = len(asyncio.all_tasks())
    beats: list[int] = []
    early = EarlyCommit(_Request(), "rid", {}, 0.05, lambda: beats.append(1))  # type: ignore[arg-type]
    registry: set[Any] = set()
    early.start(loop.time() + 0.05, registry)
    assert len(asyncio.all_tasks()) == before and registry == {early}  # a timer, not a task
    await early.close()
    await asyncio.sleep(0.1)  # past `at`: the cancelled timer never fires
    assert early.response is None and not beats and len(asyncio.all_tasks()) == before
    assert not registry  # drain no longer finds it
