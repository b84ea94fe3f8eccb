"""The origin story's EventSource client, in Chromium, through the repo's real nginx.conf (its
same-origin app location injects the app's key) in front of `llm-gateway serve`.

As written (it closes on any `error`), it gets the whole answer. With the one-line change
(`if (e.data) es.close()`) it survives a cut: nginx's worker processes are killed by PID
mid-answer (the master starts new ones), the browser reconnects by itself with
`Last-Event-ID`, and the answer finishes with no gap and no repeat, on ONE generation.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.mock import MockSettings
from gateway.mock.shapes import answer_words
from tests._live import (
    CLIENT_KEY,
    LiveGateway,
    free_port,
    live_gateway,
    require_binary,
    run_process,
    tail,
    wait_http_ok,
)
from tests._metrics import metric_value
from tests.test_nginx import nginx_argv, render_conf
from tests.test_ui_browser import chromium, require_browser

pytestmark = [pytest.mark.browser, pytest.mark.nginx]

KEY_LINE = 'proxy_set_header Authorization "Bearer APP_GATEWAY_KEY";'
ROUTE = '\n[[routes]]\nmodel = "chat-default"\ntargets = ["mock:mock-1"]\n'
HISTORY = [{"role": "user", "content": "tell me a story"}]
WAIT_MS = 30_000

#: the origin story's client, as written; `RESUMABLE` is it with the one-line change
CLIENT = """
const BASE = '/app';
window.answer = ''; window.finished = null; window.cuts = 0;
function ask(history) {
  const es = new EventSource(BASE + '/api/chat/stream?messages=' + encodeURIComponent(JSON.stringify(history)));
  es.addEventListener('message', (e) => { window.answer += JSON.parse(e.data).content; });
  es.addEventListener('done', () => { es.close(); window.finished = 'done'; });
  es.addEventListener('error', (e) => {
    es.close();
    window.finished = e.data ? 'error: ' + JSON.parse(e.data).message : 'connection error';
  });
}
"""
RESUMABLE = CLIENT.replace("""    es.close();
    window.finished""", """    if (!e.data) { window.cuts += 1; return; }  // the browser reconnects by itself
    if (e.data) es.close();
    window.finished""")


@contextlib.asynccontextmanager
async def app_behind_nginx(tmp_path: Path, settings: MockSettings
                           ) -> AsyncIterator[tuple[LiveGateway, str, Any]]:
    """The gateway, nginx from the repo's nginx.conf (the app's key substituted) serving the
    app's page at /app/, and a Chromium page on it."""
    require_browser()
    nginx = require_binary("nginx")
    async with live_gateway(tmp_path, settings, extra_toml=ROUTE, heartbeat_seconds=1) as gw:
        prefix = tmp_path / "nginx"
        (prefix / "app").mkdir(parents=True)
        script = RESUMABLE if settings.words > 100 else CLIENT
        (prefix / "app" / "index.html").write_text(f"<!doctype html><title>app</title><script>{script}</script>")
        (prefix / "app" / "resumable.html").write_text(
            f"<!doctype html><title>app</title><script>{RESUMABLE}</script>")
        text = render_conf(port := free_port(), [gw.port])
        assert text.count(KEY_LINE) == 1
        conf = prefix / "nginx.conf"
        conf.write_text(text.replace(KEY_LINE, KEY_LINE.replace("APP_GATEWAY_KEY", CLIENT_KEY)))
        log = prefix / "nginx.log"
        argv = nginx_argv(nginx, prefix, conf)
        if os.geteuid() == 0:  # workers would run as nobody, who can't read pytest's tmp dir
            argv[-1] = "daemon off; user root;"
        async with run_process(argv, log, cwd=prefix) as master:
            url = f"http://127.0.0.1:{port}"
            await wait_http_ok(f"{url}/app/index.html", master, log)
            async with chromium() as browser:
                try:
                    page = await browser.new_page()
                    page.set_default_timeout(WAIT_MS)
                    yield gw, url, (page, master)
                except BaseException:
                    print(f"--- gateway log ---\n{tail(gw.log)}\n--- nginx log ---\n{tail(log)}")
                    raise


def generations(gw: LiveGateway) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in gw.log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "generation"]


def workers_of(master_pid: int) -> list[int]:
    """nginx's worker processes: the children of the master we started."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master_pid:
                found.append(int(entry))
    return found


async def metrics(gw: LiveGateway) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{gw.url}/metrics") as response:
        return await response.text()


async def test_the_origin_storys_client_as_written_gets_the_whole_answer(tmp_path: Path) -> None:
    async with app_behind_nginx(tmp_path, MockSettings(tokens_per_second=40, words=12)) as (gw, url, (page, _)):
        await page.goto(f"{url}/app/index.html")
        await page.evaluate(f"ask({json.dumps(HISTORY)})")
        await page.wait_for_function("window.finished !== null")
        assert await page.evaluate("window.finished") == "done"
        assert (await page.evaluate("window.answer")).split() == answer_words("tell me a story", 12)
        (line,) = generations(gw)
        assert line["outcome"] == "ok" and line["subscribers"] == 1 and line["tenant"] == "test"


async def test_with_the_one_line_change_it_survives_nginx_workers_killed_mid_answer(tmp_path: Path) -> None:
    words = 40
    async with app_behind_nginx(tmp_path, MockSettings(tokens_per_second=10, words=words)) as (gw, url, (page, master)):
        await page.goto(f"{url}/app/resumable.html")
        await page.evaluate(f"ask({json.dumps(HISTORY)})")
        await page.wait_for_function("window.answer.split(' ').length > 5")
        killed = workers_of(master.pid)
        assert killed
        for pid in killed:  # the cut: the master starts new workers
            os.kill(pid, signal.SIGKILL)
        await page.wait_for_function("window.finished !== null", timeout=WAIT_MS)
        assert await page.evaluate("window.finished") == "done"
        assert await page.evaluate("window.cuts") >= 1
        assert (await page.evaluate("window.answer")).split() == answer_words("tell me a story", words)
        (line,) = generations(gw)  # one generation, resumed
        assert line["outcome"] == "ok" and line["resumes"] >= 1 and line["subscribers"] >= 2
        assert metric_value(await metrics(gw), "gateway_stream_resumes_total", result="replayed") >= 1
        assert not set(killed) & set(workers_of(master.pid))


async def test_a_long_conversation_fits_in_the_url_through_nginx(tmp_path: Path) -> None:
    """Past nginx's default 8k request line: the location's buffers take the GET form's URL."""
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 400}
               for i in range(20)] + [{"role": "user", "content": "and now?"}]
    assert len(json.dumps(history)) > 40_000
    async with app_behind_nginx(tmp_path, MockSettings(tokens_per_second=40, words=12)) as (gw, url, (page, _)):
        await page.goto(f"{url}/app/index.html")
        await page.evaluate(f"ask({json.dumps(history)})")
        await page.wait_for_function("window.finished !== null")
        assert await page.evaluate("window.finished") == "done"
        assert (await page.evaluate("window.answer")).split() == answer_words("and now?", 12)
