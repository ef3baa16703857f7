"""The browser client in a real Chromium (Debian's, driven by Playwright) with a fake microphone.

The microphone plays a question synthesized by Piper (looped by Chromium, with silence around
it). Every wait is on a condition in the page (``window.vw`` counters, the DOM), never a sleep.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import Fakes, RunningServer, Speaker, start_server
from voicewire.audio import encode_wav, resample_pcm16

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
    card = await page.inner_text(".tool")
    assert "generate_chart" in card and '"apples","oranges","bananas"' in card and " ms → " in card
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
