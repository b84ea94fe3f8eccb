"""The demo page's answers are resumable streams: a connection that drops mid-answer comes
back by itself (Last-Event-ID) with nothing lost and nothing repeated, and the page says it
reconnected. Chromium through Playwright, on test_ui_browser's in-process stack."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from gateway.mock import MockSettings
from tests import test_ui_browser as ui
from tests.test_ui_browser import PHONE, UPSTREAM_KEY, WAIT_MS, Chat, mock_answer

pytestmark = pytest.mark.browser


class CuttableProxy:
    """A TCP proxy between the page and the gateway; `cut()` drops every open connection
    (what a phone changing network or a proxy timing out does), new ones go through."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.open: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.open |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self.open -= {writer, up_writer}

    def cut(self) -> int:
        cut = len(self.open)
        for writer in list(self.open):
            writer.transport.abort()
        return cut

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class ProxiedChat(Chat):
    proxy: CuttableProxy | None = None


@pytest.fixture
async def paced_chat() -> AsyncIterator[ProxiedChat]:
    """The page on a gateway whose mock answers 40 words at 10 a second."""
    ui.require_browser()
    settings = MockSettings(tokens_per_second=10, words=40, api_key=UPSTREAM_KEY)
    async with ui.running_stack(settings) as stack, ui.chromium() as browser:
        proxy = CuttableProxy(int(stack.url.rsplit(":", 1)[1]))
        url = await proxy.start()
        try:
            context = await browser.new_context(viewport=PHONE)
            context.set_default_timeout(WAIT_MS)
            page = await context.new_page()
            chat = ProxiedChat(page, stack, proxy=proxy)
            page.on("request", lambda request: chat.requested.append(request.url))
            page.on("pageerror", lambda error: chat.page_errors.append(str(error)))
            await page.goto(url + "/")
            yield chat
            assert chat.page_errors == []
        finally:
            await proxy.close()


async def test_a_dropped_connection_reconnects_and_the_answer_is_whole(paced_chat: ProxiedChat) -> None:
    from playwright.async_api import expect

    chat, prompt = paced_chat, "Tell me slowly."
    await chat.send(prompt)
    await chat.wait_status("streaming")
    await expect(chat.page.locator("#output")).to_have_text(re.compile(r"^\S+ \S+ \S+"), timeout=WAIT_MS)
    assert chat.proxy is not None and chat.proxy.cut() >= 2  # the page's stream is cut
    await chat.wait_status("reconnecting")
    await chat.wait_status("done")
    assert await chat.output() == mock_answer(prompt, 40)  # no gap, no repeat
    await expect(chat.page.locator("#stats")).to_contain_text("reconnected", timeout=WAIT_MS)
    assert len(chat.stack.mock.streams) == 1  # one generation: the same answer, resumed
    follows = [url for url in chat.requested if re.search(r"/api/chat/streams/[\w-]+$", url)]
    assert len(follows) >= 2
