"""The demo chat page (`gateway/static/index.html`) in Debian's chromium, driven by Playwright.

The gateway (built from `demo_config`, the page on) and the paced mock upstream run
in-process on 127.0.0.1, so the tests can watch the mock's `StreamRecord`s: answers stream
into the page token by token, errors show, and Stop closes the upstream stream too. Markdown,
reported usage and cost come from `fake_gateway`, a tiny server of this file that serves the
same page and streams canned simple events. The layout tests take screenshots; with
`UPDATE_SCREENSHOTS=1` they rewrite the README's (`docs/screenshots/*.png`).
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
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from gateway.app import build_app
from gateway.demo import DEMO_KEY, DEMO_UPSTREAM_KEY_ENV, demo_config
from gateway.mock import MOCK_STATE, MockSettings, MockState, start_mock
from gateway.mock.shapes import answer_words
from gateway.state import DEMO_KEY as DEMO_KEY_APPKEY
from gateway.ui import index_page

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
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 800}
#: the README's screenshots are rewritten only when asked (`UPDATE_SCREENSHOTS=1`); otherwise a
#: run writes its own under pytest's tmp dir, and a checkout stays clean
DOC_SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


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


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, through Playwright (skipped, or failed under CI, without
    them); closed at the end. Every browser test launches it here."""
    require_browser()
    assert async_playwright is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=LAUNCH_MS)
        try:
            yield browser
        finally:
            await browser.close()


def mock_answer(prompt: str, words: int = WORDS) -> str:
    """The mock's deterministic answer to a last user message."""
    return " ".join(answer_words(prompt, words))


@dataclass
class Stack:
    url: str
    mock: MockState


@contextlib.asynccontextmanager
async def running_stack(settings: MockSettings, demo_key: str | None = None) -> AsyncIterator[Stack]:
    """The mock upstream and the demo-config gateway in front of it, each on a free port
    (the demo names three concrete models, for the model picker, and prices them)."""
    mock_runner, mock_url = await start_mock(settings=settings)
    try:
        config = demo_config(None, {DEMO_UPSTREAM_KEY_ENV: UPSTREAM_KEY}, mock_url)
        app = build_app(config, demo_key=demo_key)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            yield Stack(f"http://127.0.0.1:{port}", mock_runner.app[MOCK_STATE])
        finally:
            await runner.cleanup()
    finally:
        await mock_runner.cleanup()


# -- fake_gateway: the page's own origin, streaming canned simple events ------------------------

MARKDOWN_PROMPT = "How does the relay stream?"
MARKDOWN_ANSWER = (
    "Streaming with **Server-Sent Events** keeps the *first token* fast:\n\n"
    "```python\n"
    "async def relay(upstream, client):\n"
    "    async for line in upstream:\n"
    "        await client.write(line)  # flushed at once\n"
    "```\n\n"
    "1. read one line\n"
    "2. write it, then `flush`\n"
    "3. repeat until `[DONE]`\n\n"
    "See the [SSE spec](https://html.spec.whatwg.org/multipage/server-sent-events.html)."
)
MARKDOWN_USAGE = {"prompt_tokens": 31, "completion_tokens": 87}
MARKDOWN_COST = 0.000468
UNSAFE_PROMPT = "Show me some HTML."
UNSAFE_FIRST_LINE = (
    'Text <script>document.title = "pwned"</script> <img src=x onerror="document.title=1"> stays text.'
)
UNSAFE_ANSWER = UNSAFE_FIRST_LINE + "\n\n[a script link](javascript:alert) and [a fine one](https://example.com/docs)"
INTRO_PROMPT = "What does the gateway do?"
INTRO_ANSWER = (
    "It relays **OpenAI** and **Anthropic** streams line by line, decides per tenant who may "
    "stream, and counts every token."
)
HEADER_COST_PROMPT = "What did that cost?"
PIECE = 3  # characters per delta: fences, `**` and links all arrive split across events


def simple_event(name: str, data: object) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


FAKE_STREAMS = web.AppKey("fake_streams", dict)


async def fake_create_stream(request: web.Request) -> web.Response:
    """`POST /api/chat/streams`: the body kept under a new id, to be followed."""
    streams = request.app[FAKE_STREAMS]
    stream_id = f"fake{len(streams)}"
    streams[stream_id] = await request.json()
    return web.json_response({"id": stream_id, "url": f"/api/chat/streams/{stream_id}"}, status=201)


async def fake_follow_stream(request: web.Request) -> web.StreamResponse:
    return await fake_chat_stream(request, request.app[FAKE_STREAMS][request.match_info["stream_id"]])


async def fake_chat_stream(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Answers by prompt, a few characters per event, then `done` with usage and cost (or the
    cost in a header), as a later gateway version reports them."""
    prompt = body["messages"][-1]["content"]
    answer = {MARKDOWN_PROMPT: MARKDOWN_ANSWER, UNSAFE_PROMPT: UNSAFE_ANSWER}.get(prompt, INTRO_ANSWER)
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    done: dict[str, object] = {"usage": MARKDOWN_USAGE, "cost_usd": MARKDOWN_COST}
    if prompt == HEADER_COST_PROMPT:
        headers["x-gateway-cost-usd"] = "0.25"
        done = {}
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    await asyncio.sleep(0.2)  # pacing, so the arrival plot has a first-token delay to show
    for start in range(0, len(answer), PIECE):
        await response.write(simple_event("message", {"content": answer[start:start + PIECE], "done": False}))
        await asyncio.sleep(0.004 if start % 60 else 0.06)  # bursts, like a real model
    await response.write(simple_event("done", done))
    return response


async def fake_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "mock-1"}, {"id": "mock-2"}, {"id": "gpt-*"}]})


@pytest.fixture
async def fake_gateway() -> AsyncIterator[str]:
    """The page (through `gateway.ui.index_page`, demo key set) and canned answers."""
    app = web.Application()
    app[DEMO_KEY_APPKEY] = DEMO_KEY
    app.router.add_get("/", index_page)
    app.router.add_get("/v1/models", fake_models)
    app[FAKE_STREAMS] = {}
    app.router.add_post("/api/chat/streams", fake_create_stream)
    app.router.add_get("/api/chat/streams/{stream_id}", fake_follow_stream)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@dataclass
class Chat:
    page: Page
    stack: Stack
    requested: list[str] = field(default_factory=list)  # every URL the page asked for
    page_errors: list[str] = field(default_factory=list)  # uncaught JS exceptions

    async def send(self, prompt: str, key: str | None = DEMO_KEY) -> None:
        if key is not None:
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
def demo_key() -> str | None:
    """The key the gateway app offers the page (`--demo`); none unless a test says so."""
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def chat(
    browser: Browser, mock_settings: MockSettings, demo_key: str | None
) -> AsyncIterator[Chat]:
    """The page open on a fresh gateway, in a phone-sized window with empty storage."""
    async with running_stack(mock_settings, demo_key) as stack:
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


async def test_the_page_is_labelled_self_contained_and_keeps_the_key_in_session_storage(
    chat: Chat,
) -> None:
    page = chat.page
    for label, selector in [("API key", "#key"), ("Model", "#model"), ("Message", "#prompt")]:
        assert await page.get_by_label(label, exact=True).evaluate("e => '#' + e.id") == selector
    assert await page.input_value("#key") == ""
    assert await page.input_value("#model") == "mock-1"
    assert await page.text_content("#status") == "ready"

    await chat.send("Show me the page.")
    await chat.wait_status("done")
    await page.reload()
    assert await page.input_value("#key") == DEMO_KEY  # from sessionStorage
    stored = await page.evaluate("[sessionStorage.getItem('llm-gateway.key'), localStorage.length]")
    assert stored == [DEMO_KEY, 0]
    outside = [url for url in chat.requested if not url.startswith(chat.stack.url + "/")]
    assert outside == []


@pytest.mark.parametrize("demo_key", [DEMO_KEY])
async def test_in_demo_mode_the_key_is_filled_in_and_a_first_message_just_works(chat: Chat) -> None:
    assert await chat.page.input_value("#key") == DEMO_KEY
    await expect(chat.page.locator("#key-hint")).to_contain_text("Demo key · kept in this tab only", timeout=WAIT_MS)
    prompt = "Hello from a fresh tab."
    await chat.send(prompt, key=None)
    await chat.wait_status("done")
    assert await chat.output() == mock_answer(prompt)


async def test_the_model_picker_lists_the_models_the_key_may_use(chat: Chat) -> None:
    page = chat.page
    assert await page.get_attribute("#model", "list") == "models"
    await page.fill("#key", DEMO_KEY)
    await page.dispatch_event("#key", "change")
    options = page.locator("#models option")
    await expect(options).to_have_count(3, timeout=WAIT_MS)
    assert await options.evaluate_all("os => os.map(o => o.value)") == ["claude-demo", "mock-1", "mock-2"]
    await expect(page.locator("#model-hint")).to_contain_text("3 models listed", timeout=WAIT_MS)

    await page.fill("#key", "not-a-real-key")
    await page.dispatch_event("#key", "change")
    # A refused key is said under the key field (issue 21), not under the model.
    await expect(page.locator("#key-hint")).to_have_text("The key was refused (401).", timeout=WAIT_MS)
    assert await page.get_attribute("#key-hint", "data-tone") == "bad"
    await expect(page.locator("#model-hint")).to_have_text("Type or pick a model", timeout=WAIT_MS)
    await expect(options).to_have_count(0, timeout=WAIT_MS)

    await page.fill("#key", DEMO_KEY)
    await page.dispatch_event("#key", "change")
    await expect(options).to_have_count(3, timeout=WAIT_MS)
    await expect(page.locator("#key-hint")).not_to_contain_text("refused", timeout=WAIT_MS)
    await page.fill("#model", "mock-2")  # a listed name is sent as it is
    await chat.send("Which model is this?")
    await chat.wait_status("done")
    body = chat.stack.mock.requests[-1].body
    assert body is not None and body["model"] == "mock-2"


async def test_the_answer_shows_its_tokens_rate_and_arrival_plot(chat: Chat) -> None:
    await chat.send("Count my tokens.")
    await chat.wait_status("done")
    stats = await chat.page.text_content("#stats") or ""
    # The gateway's simple events carry no usage yet, so tokens are counted one per delta.
    assert re.fullmatch(rf"≈{WORDS} tokens · [\d.]+ tok/s · first token \d+ ms · [\d.]+ s", stats), stats
    assert await chat.page.get_attribute("#plot", "data-points") == str(WORDS)
    assert await chat.page.is_visible("#plot")
    # the demo prices its models, so the answer's cost (from the `done` event) is shown
    await expect(chat.page.locator("#cost")).to_be_visible(timeout=WAIT_MS)
    assert "$" in (await chat.page.text_content("#cost") or "")


async def test_reload_keeps_the_conversation_and_the_next_message_continues_it(chat: Chat) -> None:
    first, second, third = "First question?", "Second question?", "Third question?"
    for prompt in (first, second):
        await chat.send(prompt)
        await chat.wait_status("done")
    await chat.page.fill("#model", "mock-2")
    await chat.page.dispatch_event("#model", "change")

    await chat.page.reload()
    bubbles = chat.page.locator("#transcript .msg")
    texts = [first, mock_answer(first), second, mock_answer(second)]
    await expect(bubbles).to_have_text(texts, timeout=WAIT_MS)
    assert await chat.page.input_value("#model") == "mock-2"

    await chat.send(third, key=None)
    await chat.wait_status("done")
    body = chat.stack.mock.requests[-1].body
    assert body is not None
    assert body["messages"] == [
        {"role": "user", "content": first}, {"role": "assistant", "content": texts[1]},
        {"role": "user", "content": second}, {"role": "assistant", "content": texts[3]},
        {"role": "user", "content": third},
    ]


async def test_after_ten_turns_the_controls_stay_in_view_while_only_the_conversation_scrolls(
    browser: Browser, mock_settings: MockSettings
) -> None:
    async with running_stack(mock_settings) as stack:
        context = await browser.new_context(viewport=DESKTOP)
        context.set_default_timeout(WAIT_MS)
        try:
            chat = Chat(await context.new_page(), stack)
            await chat.page.goto(stack.url + "/")
            await chat.page.fill("#model", "mock-1+tps=2000,words=40")
            for turn in range(10):
                await chat.send(f"Turn {turn}: tell me more.")
                await chat.wait_status("done")
            await chat.page.fill("#model", "mock-1+words=400")  # 20 s at the mock's pace
            await chat.send("One more, a long one.")
            await chat.wait_status("streaming")
            await expect(chat.page.locator("#output")).to_have_text(re.compile(r"^\S+ \S+"), timeout=WAIT_MS)

            for selector in ("#stop", "#send", "#prompt", "#status", "#key", "#model", "h1"):
                await expect(chat.page.locator(selector)).to_be_in_viewport(timeout=WAIT_MS)
            scroll = await chat.page.eval_on_selector("#conversation", """c => ({
                overflowing: c.scrollHeight > c.clientHeight,
                followed: c.scrollHeight - c.scrollTop - c.clientHeight < 40,
                page: document.scrollingElement.scrollHeight - window.innerHeight,
            })""")
            assert scroll == {"overflowing": True, "followed": True, "page": 0}
            await chat.page.click("#stop")
            await chat.wait_status("stopped")
            assert await chat.page.locator("#transcript .msg").count() == 21
        finally:
            await context.close()


@contextlib.asynccontextmanager
async def fake_chat(
    browser: Browser, url: str, viewport: dict[str, int] = PHONE, scheme: str = "light"
) -> AsyncIterator[Chat]:
    context = await browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[arg-type]
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        chat = Chat(page, Stack(url, MockState()))
        page.on("pageerror", lambda error: chat.page_errors.append(str(error)))
        await page.goto(url + "/")
        yield chat
        assert chat.page_errors == []
    finally:
        await context.close()


async def tags(chat: Chat, selector: str = "#output") -> list[str]:
    return await chat.page.eval_on_selector(selector, "o => [...o.querySelectorAll('*')].map(e => e.tagName)")


async def test_markdown_streams_into_code_blocks_lists_and_links(browser: Browser, fake_gateway: str) -> None:
    async with fake_chat(browser, fake_gateway) as chat:
        await chat.send(MARKDOWN_PROMPT, key=None)
        await chat.wait_status("done")
        assert await tags(chat) == [
            "P", "STRONG", "EM", "PRE", "CODE", "OL", "LI", "LI", "CODE", "LI", "CODE", "P", "A"]
        code = chat.page.locator("#output pre > code")
        assert await code.get_attribute("class") == "language-python"
        assert await code.text_content() == (
            "async def relay(upstream, client):\n"
            "    async for line in upstream:\n"
            "        await client.write(line)  # flushed at once")
        link = chat.page.locator("#output a")
        assert [await link.get_attribute(name) for name in ("href", "rel", "target")] == [
            "https://html.spec.whatwg.org/multipage/server-sent-events.html", "noopener noreferrer", "_blank"]
        assert await chat.page.locator("#output li").all_text_contents() == [
            "read one line", "write it, then flush", "repeat until [DONE]"]


async def test_html_in_model_text_is_shown_as_text_and_only_http_links_are_made(
    browser: Browser, fake_gateway: str
) -> None:
    async with fake_chat(browser, fake_gateway) as chat:
        title = await chat.page.title()
        await chat.send(UNSAFE_PROMPT, key=None)
        await chat.wait_status("done")
        assert await tags(chat) == ["P", "P", "A"]
        paragraphs = await chat.page.locator("#output p").all_text_contents()
        assert paragraphs == [UNSAFE_FIRST_LINE, "[a script link](javascript:alert) and a fine one"]
        assert await chat.page.get_attribute("#output a", "href") == "https://example.com/docs"
        assert await chat.page.title() == title
        # and the same after a reload, when the answer is rendered again from sessionStorage
        await chat.page.reload()
        assert await tags(chat, "#transcript") == ["DIV", "DIV", "P", "P", "A"]
        assert await chat.page.title() == title


async def test_reported_usage_and_cost_replace_the_delta_count(browser: Browser, fake_gateway: str) -> None:
    async with fake_chat(browser, fake_gateway) as chat:
        await chat.send(MARKDOWN_PROMPT, key=None)
        await chat.wait_status("done")
        stats = await chat.page.text_content("#stats") or ""
        assert re.fullmatch(r"87 tokens · [\d.]+ tok/s · first token \d+ ms · [\d.]+ s", stats), stats
        deltas = -(-len(MARKDOWN_ANSWER) // PIECE)
        assert await chat.page.get_attribute("#plot", "data-points") == str(deltas)
        await expect(chat.page.locator("#cost")).to_have_text("$0.00047", timeout=WAIT_MS)

        await chat.send(HEADER_COST_PROMPT, key=None)
        await chat.wait_status("done")
        await expect(chat.page.locator("#cost")).to_have_text("$0.2500", timeout=WAIT_MS)
        assert (await chat.page.text_content("#stats") or "").startswith("≈")  # no usage this time


MARKDOWN_CASES = [
    ("a *b* **c** `d`", "<p>a <em>b</em> <strong>c</strong> <code>d</code></p>"),
    ("snake_case_name and 2 * 3 * 4", "<p>snake_case_name and 2 * 3 * 4</p>"),
    ("*a **b***", "<p><em>a <strong>b</strong></em></p>"),
    ("- a\n- b\n  - c", "<ul><li>a</li><li>b<ul><li>c</li></ul></li></ul>"),
    ("2. two\n3. three", '<ol start="2"><li>two</li><li>three</li></ol>'),
    ("```js\nif (x < 1) {}\n```", '<pre data-lang="js"><code class="language-js">if (x &lt; 1) {}</code></pre>'),
    ("```\nopen fence", "<pre><code>open fence</code></pre>"),
    ("<b>x</b> &amp;", "<p>&lt;b&gt;x&lt;/b&gt; &amp;amp;</p>"),
    ("[t](https://a.example/x)", '<p><a href="https://a.example/x" rel="noopener noreferrer" target="_blank">t</a></p>'),
    ("[t](javascript:alert) [u](/relative)", "<p>[t](javascript:alert) [u](/relative)</p>"),
    ("see https://example.com/x.", '<p>see <a href="https://example.com/x" rel="noopener noreferrer" '
                                   'target="_blank">https://example.com/x</a>.</p>'),
    ("# Title\ntext", "<h1>Title</h1><p>text</p>"),
    ("> quoted **bold**", "<blockquote><p>quoted <strong>bold</strong></p></blockquote>"),
    ("| a | b |\n|---|---|\n| 1 | `2` |",
     "<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td><code>2</code></td>"
     "</tr></tbody></table>"),
    ("one\ntwo\n\n---\n\nthree", "<p>one\ntwo</p><hr><p>three</p>"),
    ("\\*not italic\\*", "<p>*not italic*</p>"),
]


async def test_the_markdown_renderer_builds_these_nodes(chat: Chat) -> None:
    rendered = await chat.page.evaluate(
        "cases => cases.map(text => window.gatewayChat.markdown(text).innerHTML)",
        [text for text, _ in MARKDOWN_CASES])
    assert rendered == [html for _, html in MARKDOWN_CASES]


async def test_rendering_while_streaming_equals_rendering_the_whole_text_at_every_step(chat: Chat) -> None:
    text = MARKDOWN_ANSWER + "\n\n" + "\n\n".join(source for source, _ in MARKDOWN_CASES) + "\n\n" + UNSAFE_ANSWER
    mismatches = await chat.page.evaluate("""text => {
        const { MarkdownView, markdown } = window.gatewayChat;
        const target = document.createElement("div");
        const view = new MarkdownView(target);
        const bad = [];
        for (let end = 0; end <= text.length; end++) {
            view.update(text.slice(0, end));
            if (target.innerHTML !== markdown(text.slice(0, end)).innerHTML) bad.push(end);
        }
        return bad;
    }""", text)
    assert mismatches == []


@pytest.mark.parametrize(("name", "viewport", "scheme"), [
    ("chat-light", DESKTOP, "light"), ("chat-dark", DESKTOP, "dark"), ("chat-mobile", PHONE, "light"),
])
async def test_screenshots_of_a_conversation(
    browser: Browser, fake_gateway: str, name: str, viewport: dict[str, int], scheme: str,
    tmp_path: Path,
) -> None:
    folder = DOC_SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    async with fake_chat(browser, fake_gateway, viewport, scheme) as chat:
        await expect(chat.page.locator("#model-hint")).to_contain_text("2 models listed", timeout=WAIT_MS)
        for prompt in (INTRO_PROMPT, MARKDOWN_PROMPT):
            await chat.send(prompt, key=None)
            await chat.wait_status("done")
        folder.mkdir(parents=True, exist_ok=True)
        shot = folder / f"{name}.png"
        await chat.page.screenshot(path=shot)
        assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
