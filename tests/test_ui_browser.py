"""The demo chat page (`gateway/static/index.html`) in Debian's chromium, driven by Playwright.

The gateway (built from `demo_config`, the page on) and the paced mock upstream run
in-process on 127.0.0.1, so the tests can watch the mock's `StreamRecord`s: answers stream
into the page token by token, errors show, and Stop closes the upstream stream too.
Without chromium or playwright these tests skip, unless CI is set, where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from gateway.app import build_app
from gateway.demo import DEMO_KEY, DEMO_UPSTREAM_KEY_ENV, demo_config
from gateway.mock import MOCK_STATE, MockSettings, MockState, start_mock
from gateway.mock.shapes import answer_words

try:
    from playwright.async_api import async_playwright, expect
except ImportError:  # skipped (or failed under CI) in `require_browser`
    async_playwright = expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
UPSTREAM_KEY = "upstream-secret"
TPS = 20  # mock pacing: one word every 50 ms, so the page sees the answer grow
WORDS = 12
WAIT_MS = 10_000  # every Playwright wait and action
LAUNCH_MS = 30_000
ENDED_SECONDS = 5.0  # the upstream stream ends this soon after Stop (it would run 20 s)
PHONE = {"width": 390, "height": 780}


def require_browser() -> None:
    missing = []
    if async_playwright is None:
        missing.append("the playwright Python package (pip install playwright)")
    if not CHROMIUM.exists():
        missing.append(f"Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    if missing:
        reason = "the browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)


def mock_answer(prompt: str, words: int = WORDS) -> str:
    """The mock's deterministic answer to a last user message."""
    return " ".join(answer_words(prompt, words))


@dataclass
class Stack:
    url: str
    mock: MockState


@contextlib.asynccontextmanager
async def running_stack(settings: MockSettings) -> AsyncIterator[Stack]:
    """The mock upstream and the demo-config gateway in front of it, each on a free port."""
    mock_runner, mock_url = await start_mock(settings=settings)
    try:
        config = demo_config(None, {DEMO_UPSTREAM_KEY_ENV: UPSTREAM_KEY}, mock_url)
        runner = web.AppRunner(build_app(config), handler_cancellation=True, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            yield Stack(f"http://127.0.0.1:{port}", mock_runner.app[MOCK_STATE])
        finally:
            await runner.cleanup()
    finally:
        await mock_runner.cleanup()


@dataclass
class Chat:
    page: Page
    stack: Stack
    requested: list[str] = field(default_factory=list)  # every URL the page asked for
    page_errors: list[str] = field(default_factory=list)  # uncaught JS exceptions

    async def send(self, prompt: str, key: str = DEMO_KEY) -> None:
        await self.page.fill("#key", key)
        await self.page.fill("#prompt", prompt)
        await self.page.click("#send")

    async def wait_status(self, state: str) -> None:
        await expect(self.page.locator("#status")).to_have_text(state, timeout=WAIT_MS)

    async def output(self) -> str:
        return await self.page.text_content("#output") or ""


@pytest.fixture
def mock_settings() -> MockSettings:
    """Overridden per test with `@pytest.mark.parametrize("mock_settings", ...)`."""
    return MockSettings(tokens_per_second=TPS, words=WORDS, api_key=UPSTREAM_KEY)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_browser()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=LAUNCH_MS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def chat(browser: Browser, mock_settings: MockSettings) -> AsyncIterator[Chat]:
    """The page open on a fresh gateway, in a phone-sized window with empty storage."""
    async with running_stack(mock_settings) as stack:
        context = await browser.new_context(viewport=PHONE)
        context.set_default_timeout(WAIT_MS)
        try:
            page = await context.new_page()
            chat = Chat(page, stack)
            page.on("request", lambda request: chat.requested.append(request.url))
            page.on("pageerror", lambda error: chat.page_errors.append(str(error)))
            response = await page.goto(stack.url + "/")
            assert response is not None and response.status == 200
            yield chat
            assert chat.page_errors == []
        finally:
            await context.close()


async def test_send_streams_the_answer_into_output_token_by_token(chat: Chat) -> None:
    page, prompt = chat.page, "Tell me about streaming gateways."
    # Record what #output shows (and the status then) after every change to it.
    await page.eval_on_selector("#output", """output => {
        window.seen = [];
        new MutationObserver(() => window.seen.push(
            [output.textContent, document.getElementById("status").textContent]
        )).observe(output, {childList: true, characterData: true, subtree: true});
    }""")
    await chat.send(prompt)
    await chat.wait_status("done")

    final = await chat.output()
    assert final == mock_answer(prompt)
    seen: list[list[str]] = await page.evaluate("window.seen")
    assert all(final.startswith(text) for text, _ in seen), seen  # only ever grows, in order
    growing = [text for text, status in seen if text and text != final and status == "streaming"]
    assert growing, f"no intermediate text was shown before the final answer: {seen}"
    assert await page.is_hidden("#error")
    assert await page.is_enabled("#send") and await page.is_disabled("#stop")

    [request] = chat.stack.mock.requests
    assert request.body is not None
    assert request.body["model"] == "mock-1"
    assert request.body["messages"] == [{"role": "user", "content": prompt}]


async def test_the_whole_conversation_is_sent_with_each_message(chat: Chat) -> None:
    first, second = "What is SSE?", "And heartbeats?"
    await chat.send(first)
    await chat.wait_status("done")
    answer = await chat.output()
    await chat.page.fill("#prompt", second)
    await chat.page.press("#prompt", "Enter")  # Enter sends too
    await chat.wait_status("done")

    assert await chat.output() == mock_answer(second)
    body = chat.stack.mock.requests[-1].body
    assert body is not None
    assert body["messages"] == [
        {"role": "user", "content": first},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": second},
    ]
    bubbles = await chat.page.locator("#transcript .msg").all_text_contents()
    assert bubbles == [first, answer, second]


async def test_a_wrong_key_shows_the_401_error(chat: Chat) -> None:
    await chat.send("hello?", key="not-a-real-key")
    await chat.wait_status("error")

    error = chat.page.locator("#error")
    await expect(error).to_be_visible(timeout=WAIT_MS)
    await expect(error).to_contain_text("401", timeout=WAIT_MS)
    await expect(error).to_contain_text("invalid API key", timeout=WAIT_MS)
    assert await chat.output() == ""
    assert await chat.page.input_value("#prompt") == "hello?"  # given back, ready to retry
    assert chat.stack.mock.requests == []


@pytest.mark.parametrize("mock_settings", [
    MockSettings(tokens_per_second=TPS, words=400, api_key=UPSTREAM_KEY),  # a 20 s answer
], ids=["long-answer"])
async def test_stop_aborts_the_stream_and_the_upstream_with_it(chat: Chat) -> None:
    prompt = "Write a very long story."
    await chat.send(prompt)
    await chat.wait_status("streaming")
    # (expect, not wait_for_function: the page's CSP forbids the eval that one needs)
    await expect(chat.page.locator("#output")).to_have_text(re.compile(r"^\S+ \S+ \S+"), timeout=WAIT_MS)
    await chat.page.click("#stop")
    await chat.wait_status("stopped")

    record = chat.stack.mock.streams[-1]
    await asyncio.wait_for(record.ended.wait(), ENDED_SECONDS)
    assert record.client_closed
    assert not record.completed
    partial = await chat.output()
    assert partial and mock_answer(prompt, 400).startswith(partial)
    assert await chat.page.is_enabled("#send") and await chat.page.is_disabled("#stop")
    assert await chat.page.is_hidden("#error")


async def test_an_error_after_the_first_token_shows_with_the_partial_answer(chat: Chat) -> None:
    prompt = "Answer, then fail."
    await chat.page.fill("#model", "mock-1+drop=3")  # the mock cuts the connection after 3 words
    await chat.send(prompt)
    await chat.wait_status("error")

    error = chat.page.locator("#error")
    await expect(error).to_be_visible(timeout=WAIT_MS)
    await expect(error).to_contain_text("Error 502", timeout=WAIT_MS)
    assert await chat.output() == mock_answer(prompt, 3)


async def test_the_sse_parser_gives_the_same_events_however_the_stream_is_split(chat: Chat) -> None:
    stream = (
        'event: message\r\ndata: {"content": "Hi", "done": false}\r\n\r\n'
        ": ping\r\r"
        "data:a\rdata: b\r\r"
        "event: ignored\n\n"
        "event: done\ndata: {}\n\n"
        "data: an event without its blank line yet"
    )
    expected = [
        {"event": "message", "data": '{"content": "Hi", "done": false}'},
        {"event": "message", "data": "a\nb"},
        {"event": "done", "data": "{}"},
    ]
    # Every way of cutting the text into three reads, CR and LF of one CRLF apart included.
    splits = await chat.page.evaluate("""stream => {
        const seen = new Set();
        for (let i = 0; i <= stream.length; i++) {
            for (let j = i; j <= stream.length; j++) {
                const parser = new window.gatewayChat.SSEParser();
                const events = [stream.slice(0, i), stream.slice(i, j), stream.slice(j)]
                    .flatMap(part => parser.feed(part));
                seen.add(JSON.stringify(events));
            }
        }
        return [...seen];
    }""", stream)
    assert [json.loads(s) for s in splits] == [expected]


async def test_the_page_is_labelled_self_contained_and_remembers_the_key(
    chat: Chat, tmp_path: Path
) -> None:
    page = chat.page
    for label, selector in [("API key", "#key"), ("Model", "#model"), ("Message", "#prompt")]:
        assert await page.get_by_label(label, exact=True).evaluate("e => '#' + e.id") == selector
    assert await page.input_value("#key") == ""
    assert await page.input_value("#model") == "mock-1"
    assert await page.text_content("#status") == "ready"

    await chat.send("Show me the page.")
    await chat.wait_status("done")
    shot = tmp_path / "chat.png"
    await page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    await page.reload()
    assert await page.input_value("#key") == DEMO_KEY  # from localStorage
    outside = [url for url in chat.requested if not url.startswith(chat.stack.url + "/")]
    assert outside == []

