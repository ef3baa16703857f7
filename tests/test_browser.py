"""The browser client in a real Chromium (Debian's, driven by Playwright) with a fake microphone.

The microphone plays a question synthesized by Piper (looped by Chromium, with silence around
it). Every wait is on a condition in the page (``window.vw`` counters, the DOM), never a sleep.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Fakes, RunningServer, Speaker, start_server
from voicewire.audio import encode_wav, resample_pcm16
from voicewire.providers.base import Providers

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():  # make test installs it; say so rather than fail obscurely
    pytest.skip(
        "Debian's chromium is not installed (make test installs it)", allow_module_level=True
    )

from playwright.async_api import Browser, Page, async_playwright  # noqa: E402

WAIT_MS = 60_000
CHROMIUM_FLAGS = [
    # no background network calls: this machine has no network, Chromium would retry forever
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # a microphone that plays a file, granted without a prompt; audio plays without a gesture
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory: pytest.TempPathFactory, speaker: Speaker) -> Path:
    pcm = b"\x00\x00" * 16000 + speaker.say("What time is it?") + b"\x00\x00" * 48000
    path = tmp_path_factory.mktemp("mic") / "question.wav"
    path.write_bytes(encode_wav(resample_pcm16(pcm, 16000, 48000), 48000))
    return path


@pytest.fixture(scope="module")
def model_server() -> Iterator[RunningServer]:
    srv = start_server(None, warmup=True)
    yield srv
    srv.stop()


@pytest.fixture
async def browser(mic_wav: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={mic_wav}"],
        )
        yield b
        await b.close()


async def open_page(browser: Browser, srv: RunningServer, width: int = 1200) -> Page:
    page = await browser.new_page(viewport={"width": width, "height": 900})
    await page.goto(srv.base + "/")
    await page.wait_for_function("window.vw && window.vw.connected", timeout=WAIT_MS)
    return page


async def test_hands_free_spoken_question(browser: Browser, model_server: RunningServer) -> None:
    page = await open_page(browser, model_server)
    await page.click("#mic")
    await page.wait_for_function(
        "[...document.querySelectorAll('.turn .user')].some(e => /time/i.test(e.textContent))",
        timeout=WAIT_MS,
    )
    await page.wait_for_selector(".turn .assistant .sentence", timeout=WAIT_MS)
    await page.wait_for_function("window.vw.samplesScheduled > 22050", timeout=WAIT_MS)
    await page.wait_for_selector(".waterfall .row", timeout=WAIT_MS)
    rows = await page.locator(".waterfall .row").all_inner_texts()
    assert any(r.startswith("First audio") and r.rstrip().endswith("ms") for r in rows), rows
    await page.wait_for_function("document.getElementById('cost-turn').textContent.startsWith('$')")
    assert (await page.inner_text("#cost-session")).startswith("$")
    assert float(await page.locator("#level").get_attribute("value") or 0) >= 0


async def test_typed_request_draws_a_chart(browser: Browser, model_server: RunningServer) -> None:
    page = await open_page(browser, model_server)
    await page.fill("#text", "Make a pie chart of fruit: apples 5, oranges 3 and bananas 7")
    await page.press("#text", "Enter")
    await page.wait_for_selector(".chart .pielayer .slice", timeout=WAIT_MS)
    assert await page.locator(".chart .pielayer .slice").count() == 3
    card = page.locator(".tool").first
    summary = await card.locator("summary").inner_text()
    assert summary.startswith("generate_chart") and " ms · Bananas has the largest share" in summary
    arguments = json.loads(await card.locator("pre.json").first.text_content() or "")
    assert arguments["labels"] == ["apples", "oranges", "bananas"]
    # readable: the card never overflows the conversation
    fits = "e => e.scrollWidth <= e.clientWidth + 1"
    await card.locator("summary").click()  # opened, with arguments and result
    assert await card.evaluate(fits) and await page.locator("#conversation").evaluate(fits)
    assert await page.locator("#charts li").count() == 1
    await page.wait_for_function("window.vw.samplesScheduled > 0", timeout=WAIT_MS)
    user = await page.inner_text(".turn .user")
    assert "pie chart of fruit" in user
    sentences = await page.locator(".assistant .sentence").all_inner_texts()
    assert any("pie chart" in s for s in sentences), sentences


async def test_push_to_talk(browser: Browser, model_server: RunningServer) -> None:
    page = await open_page(browser, model_server)
    await page.check("input[value=manual]")
    await page.click("#mic")
    await page.wait_for_function("!document.getElementById('ptt').disabled")
    await page.dispatch_event("#ptt", "pointerdown")
    await page.wait_for_function("window.vw.audioSentMs >= 5600", timeout=WAIT_MS)  # one loop
    await page.dispatch_event("#ptt", "pointerup")
    await page.wait_for_function(
        "[...document.querySelectorAll('.turn .user')].some(e => /time/i.test(e.textContent))",
        timeout=WAIT_MS,
    )
    assert await page.locator(".turn").count() == 1  # one commit, one utterance
    await page.wait_for_selector(".turn .assistant .sentence", timeout=WAIT_MS)


async def test_page_reports_a_dropped_connection(browser: Browser, fakes: Fakes) -> None:
    srv = start_server(fakes.providers)
    page = await open_page(browser, srv, width=390)  # phone width
    assert await page.locator("#mic").is_visible() and await page.locator("#text").is_visible()
    srv.stop()
    await page.wait_for_function(
        "document.getElementById('status').textContent.includes('Connection lost')", timeout=WAIT_MS
    )
    assert not await page.evaluate("window.vw.connected")


async def test_api_docs_render_offline(browser: Browser, fakes: Fakes) -> None:
    """Swagger UI comes from this server, not a CDN: with every other host cut off the page
    still draws the API (issue 12: /docs was blank offline)."""
    srv = start_server(fakes.providers)
    try:
        page = await browser.new_page()
        elsewhere: list[str] = []

        async def only_loopback(route: Any) -> None:
            if route.request.url.startswith(srv.base):
                await route.continue_()
            else:
                elsewhere.append(route.request.url)
                await route.abort()

        await page.route("**/*", only_loopback)
        await page.goto(srv.base + "/docs")
        await page.wait_for_selector(".opblock", timeout=WAIT_MS)
        assert "stt-test" in await page.content()
        assert not [u for u in elsewhere if not u.startswith(("data:", "blob:"))], elsewhere
    finally:
        srv.stop()


# ------------------------------------------------------------------ the first hour (issue 12)


async def done_turns(page: Page, count: int) -> None:
    await page.wait_for_function(
        f"document.querySelectorAll('.turn[data-status]').length >= {count}", timeout=WAIT_MS
    )


async def test_restarting_the_microphone_keeps_one_capture_path(
    browser: Browser, model_server: RunningServer
) -> None:
    page = await open_page(browser, model_server)
    await page.check("input[value=manual]")
    for _ in range(2):  # start and stop twice: the old graph must be gone each time
        await page.click("#mic")
        await page.wait_for_function("!document.getElementById('ptt').disabled")
        await page.click("#mic")
        await page.wait_for_function("document.getElementById('ptt').disabled")
    assert await page.evaluate("vw.mic.live") == 0  # stopped means no capture node at all
    await page.check("input[value=server_vad]")  # with the mic stopped, hands-free sends nothing
    await page.check("input[value=manual]")
    assert await page.evaluate("vw.audioSentMs") == 0
    await page.click("#mic")
    await page.wait_for_function("!document.getElementById('ptt').disabled")
    assert await page.evaluate("vw.mic.live") == 1
    await page.dispatch_event("#ptt", "pointerdown")
    await page.wait_for_function("window.vw.audioSentMs >= 5600", timeout=WAIT_MS)
    await page.dispatch_event("#ptt", "pointerup")
    rate = await page.evaluate(
        "(() => { const t = vw.sentTimes; return (t.length - 1) * 1000 / (t.at(-1) - t[0]); })()"
    )
    assert 40 <= rate <= 62, rate  # 50 frames/s; two capture paths made ~100
    await done_turns(page, 1)
    heard = await page.inner_text(".turn .user")
    assert re.search(r"time", heard, re.I) and len(heard) < 40, heard


async def test_the_page_says_what_is_happening(
    browser: Browser, model_server: RunningServer
) -> None:
    page = await open_page(browser, model_server)
    await page.click("#mic")
    await done_turns(page, 1)
    await page.wait_for_function("vw.activity.at(-1) === 'idle'", timeout=WAIT_MS)
    seen = await page.evaluate("vw.activity")
    order = ["listening", "transcribing", "thinking", "speaking", "idle"]
    positions = [seen.index(s, seen.index(order[i - 1]) if i else 0) for i, s in enumerate(order)]
    assert positions == sorted(positions), seen


def long_reply_with_a_late_chart() -> Fakes:
    from voicewire.providers.base import ToolCallRequest
    from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT, FakeTTS

    chart = ToolCallRequest(
        "c1", "generate_chart", {"chart_type": "bar", "labels": ["a", "b"], "values": [1, 2]}
    )
    intro = " ".join(f"This is sentence number {n} of a long introduction." for n in range(1, 7))
    llm = FakeLLM([FakeLLMStep(intro, tool_calls=[chart]), FakeLLMStep("Here is the chart.")])
    return Fakes(FakeSTT(), llm, FakeTTS(ms_per_char=15))


async def test_stop_means_stop(browser: Browser) -> None:
    fakes = long_reply_with_a_late_chart()
    srv = start_server(fakes.providers)
    try:
        page = await open_page(browser, srv)
        assert await page.locator("#stop").is_disabled()  # nothing runs yet
        await page.fill("#text", "talk to me")
        await page.press("#text", "Enter")
        await page.wait_for_selector(".turn .assistant .sentence", timeout=WAIT_MS)
        await done_turns(page, 1)  # the server is done; the reply still plays
        uid = await page.get_attribute(".turn", "data-utterance")
        assert await page.locator("#stop").is_enabled()
        await page.click("#stop")
        shown = await page.locator(".assistant .sentence").count()
        assert shown < 7 and await page.evaluate(f"vw.player.pending('{uid}')") == 0
        assert await page.locator(".turn.stopped").count() == 1
        assert await page.locator("#stop").is_disabled()
        assert await page.evaluate("vw.activity.at(-1)") == "stopped"
        # nothing of that turn comes later: no sentence, no chart, no error
        await page.fill("#text", "again")
        await page.press("#text", "Enter")
        await done_turns(page, 2)
        await page.wait_for_function("vw.activity.includes('speaking', 1)", timeout=WAIT_MS)
        first = page.locator(".turn").first
        assert await first.locator(".sentence").count() == shown
        assert await first.locator(".chart").count() == 0
        assert await page.locator(".error").count() == 0
    finally:
        srv.stop()


async def test_typed_messages_are_labelled_and_never_lost(browser: Browser, fakes: Fakes) -> None:
    srv = start_server(fakes.providers)
    try:
        page = await open_page(browser, srv)
        for text in ("first message", "second message"):  # the second before the first's ack
            await page.fill("#text", text)
            await page.press("#text", "Enter")
        await done_turns(page, 2)
        users = await page.locator(".turn .user").all_inner_texts()
        assert users == ["first message", "second message"]
        srv.stop()
        await page.wait_for_function(
            "document.getElementById('status').textContent.includes('Connection lost')",
            timeout=WAIT_MS,
        )
        await page.fill("#text", "are you there?")
        await page.press("#text", "Enter")
        assert await page.input_value("#text") == "are you there?"  # kept
        assert "not sent" in await page.inner_text("#composer-note")  # and said
    finally:
        srv.stop()


async def test_the_page_resumes_its_conversation_on_another_worker(browser: Browser) -> None:
    """The worker serving the page goes away and another takes its port (a deploy, a
    crash behind a load balancer): the page reconnects by itself and the agent remembers."""
    from tests.engines import RedisServer
    from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT, FakeTTS

    redis_server = RedisServer.start()
    first = FakeLLM([FakeLLMStep("Paris it is.")])
    srv = start_server(Providers(FakeSTT(), first, FakeTTS()), redis_url=redis_server.url)
    port = int(srv.base.rsplit(":", 1)[1])
    second = FakeLLM([FakeLLMStep("You said Paris.")])
    try:
        page = await open_page(browser, srv)
        await page.fill("#text", "my favourite city is Paris")
        await page.press("#text", "Enter")
        await done_turns(page, 1)
        srv.stop()
        srv = start_server(
            Providers(FakeSTT(), second, FakeTTS()), port=port, redis_url=redis_server.url
        )
        await page.wait_for_function(
            "document.getElementById('status').textContent.includes('resumed')", timeout=WAIT_MS
        )
        await page.fill("#text", "which city did I name?")
        await page.press("#text", "Enter")
        await done_turns(page, 2)
        messages, _ = second.calls[-1]
        assert any("Paris" in str(m.get("content")) for m in messages if m["role"] == "user")
        assert [m["content"] for m in messages if m["role"] == "assistant"] == ["Paris it is."]
    finally:
        srv.stop()
        redis_server.stop()


async def test_layout_keeps_the_input_in_view_and_costs_readable(browser: Browser) -> None:
    srv = start_server(None, profile="zero")
    try:
        page = await open_page(browser, srv, width=1200)
        for n in range(6):
            await page.fill("#text", f"message {n}")
            await page.press("#text", "Enter")
            await done_turns(page, n + 1)
        box = await page.locator("#text").bounding_box()
        assert box is not None and box["y"] + box["height"] <= 900  # the input bar stays
        last = await page.locator(".turn").last.bounding_box()
        assert last is not None and last["y"] < 900  # the conversation followed
        cost = await page.inner_text("#cost-turn")
        assert re.fullmatch(r"\$\d+\.\d{2,4}|\$0\.0*[1-9]\d?", cost), cost
        formats = await page.evaluate(
            "import('/web/view.js').then(m => "
            "['0.0000160000', '0.0144', '0', '1.6E-7', '12.5'].map(m.usd))"
        )
        assert formats == ["$0.000016", "$0.0144", "$0", "$0.00000016", "$12.50"]
    finally:
        srv.stop()


async def test_phone_header_fits_and_charts_keep_their_title(browser: Browser) -> None:
    from voicewire.providers.base import Providers
    from voicewire.providers.fake import FakeSTT, FakeTTS
    from voicewire.providers.local.agent import RulesAgent

    srv = start_server(Providers(stt=FakeSTT(), llm=RulesAgent(), tts=FakeTTS()))
    try:
        page = await open_page(browser, srv, width=390)
        await page.fill("#text", "Bar chart of sales: January 120, February 150, March 90")
        await page.press("#text", "Enter")
        await page.wait_for_selector(".chart .gtitle", timeout=WAIT_MS)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        header = await page.locator("header").bounding_box()
        await page.screenshot(path="/tmp/phone.png")
        assert header is not None and header["height"] < 80
        assert await page.locator(".chart .modebar-container .modebar").count() == 0
        box = await page.locator("#text").bounding_box()
        assert box is not None and box["y"] + box["height"] <= 900
    finally:
        srv.stop()


# ------------------------------------------------------------------ barge-in (issue 13)


@pytest.fixture(scope="module")
def talk_over_wav(tmp_path_factory: pytest.TempPathFactory, speaker: Speaker) -> Path:
    """A question, then, while the answer plays, the user talks again at length."""
    pcm = (
        b"\x00\x00" * 16000
        + speaker.say("What time is it?")
        + b"\x00\x00" * 19200  # 1.2 s: the answer has started
        + speaker.say("Wait, wait, I want to ask you something else instead, what is the date?")
        + b"\x00\x00" * 64000
    )
    path = tmp_path_factory.mktemp("mic") / "talk-over.wav"
    path.write_bytes(encode_wav(resample_pcm16(pcm, 16000, 48000), 48000))
    return path


async def test_talking_over_the_agent_stops_it_in_the_page(
    talk_over_wav: Path, model_server: RunningServer
) -> None:
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={talk_over_wav}"],
        )
        try:
            page = await open_page(b, model_server)
            await page.click("#mic")
            await page.wait_for_selector(".turn.interrupted", timeout=WAIT_MS)
            first = page.locator(".turn.interrupted").first
            uid = await first.get_attribute("data-utterance")
            assert await page.evaluate(f"vw.player.pending('{uid}')") == 0  # playout stopped
            reports = await page.evaluate("vw.reports")
            assert any(r["uid"] == uid and not r["done"] for r in reports), reports
            users = "[...document.querySelectorAll('.turn .user')]"
            asked = users + ".some(e => /date/i.test(e.textContent))"
            try:
                await page.wait_for_function(asked, timeout=WAIT_MS)  # the user's words answered
            except Exception as exc:  # say what the page heard instead
                heard = await page.evaluate(users + ".map(e => e.textContent)")
                raise AssertionError(f"the talk-over was not heard as asked: {heard}") from exc
            assert "interrupted" in await first.inner_text()
        finally:
            await b.close()


# ------------------------------------------------------------------ API keys (issue 17)


async def test_with_keys_on_the_page_asks_for_one_and_connects_with_a_token(
    browser: Browser,
) -> None:
    from voicewire.providers.base import Providers
    from voicewire.providers.fake import FakeSTT, FakeTTS
    from voicewire.providers.local.agent import RulesAgent

    key = "vw-browser-key-0123456789"
    srv = start_server(Providers(stt=FakeSTT(), llm=RulesAgent(), tts=FakeTTS()), api_keys=key)
    try:
        page = await browser.new_page()
        await page.goto(srv.base + "/")
        await page.wait_for_selector("#key-form:not([hidden])", timeout=WAIT_MS)
        assert "API key" in await page.inner_text("#status")
        await page.fill("#api-key", "not-the-key")
        await page.press("#api-key", "Enter")
        await page.wait_for_function(
            "document.getElementById('status').textContent.includes('refused')", timeout=WAIT_MS
        )
        await page.fill("#api-key", key)
        await page.press("#api-key", "Enter")
        await page.wait_for_function("window.vw && window.vw.connected", timeout=WAIT_MS)
        await page.fill("#text", "What time is it?")
        await page.press("#text", "Enter")
        await page.wait_for_selector(".turn .assistant .sentence", timeout=WAIT_MS)
        assert key not in await page.evaluate("location.href + document.cookie")
    finally:
        srv.stop()
