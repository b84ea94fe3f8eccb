"""An upstream host that does not resolve: the failure names the host, not a bare `gaierror`."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.routing import Target
from gateway.upstream.attempt import Failure, attempt
from tests.conftest import make_config


class Unresolvable(AbstractResolver):
    """What the system resolver does for an unknown name, without asking any DNS server."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        raise OSError(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        return None


async def test_an_unresolvable_host_is_named_in_the_failure() -> None:
    raw_url = "http://llm.nowhere.invalid"
    config = make_config(raw_url)
    target = Target(config.upstreams[0], "mock-1")
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=Unresolvable())) as session:
        result: Any = await attempt(
            session, target, b"{}", CIMultiDictProxy(CIMultiDict()), "req-1", stream=True,
            commit_at=None, deadline=loop.time() + 10, max_response_bytes=1 << 20)
    assert isinstance(result, Failure)
    assert result.kind == "connect"
    assert result.detail == "cannot resolve upstream host 'llm.nowhere.invalid' (DNS lookup failed)"
