"""End to end with the real embedded models: Whisper hears, the agent answers, Piper speaks.

Questions are synthesized with Piper, streamed as binary microphone audio through a real
uvicorn server, and the reply is checked as words and as audio.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.conftest import RunningServer, Speaker, check_invariants, silence, start_server
from voicewire.audio import encode_wav
from voicewire.client import Client, TurnResult

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def model_server() -> Iterator[RunningServer]:
    srv = start_server(None, warmup=True, turn_detection="server_vad")
    yield srv
    srv.stop()


def assert_spoken_reply(result: TurnResult, sample_rate: int) -> None:
    frames = [r.frame for r in result.frames]
    check_invariants(frames)
    assert result.status == "completed", frames
    pcm = np.frombuffer(result.audio, dtype=np.int16)
    audio_ms = result.first("tts_complete").audio_ms  # type: ignore[union-attr]
    assert len(pcm) == pytest.approx(audio_ms * sample_rate / 1000, abs=1)
    assert len(pcm) > sample_rate // 2, "less than half a second of reply"
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    assert rms > 300, f"reply audio is near-silent (rms {rms:.0f})"
    texts = " ".join(f.text for f in result.of_type("assistant_text"))  # type: ignore[attr-defined]
    assert texts == result.first("llm_complete").text  # type: ignore[union-attr]


async def test_health_names_the_embedded_models(model_server: RunningServer) -> None:
    client = await Client.connect(model_server.ws_url)  # returns once the models are ready
    await client.close()
    async with httpx.AsyncClient(base_url=model_server.base) as http:
        body = (await http.get("/health")).json()
    assert body["status"] == "ready"
    assert body["models"] == {
        "stt": "local:faster-whisper/base",
        "llm": "local:rules-agent",
        "tts": "local:piper/en_US-joe-medium",
    }


async def test_spoken_question_with_server_vad(
    model_server: RunningServer, speaker: Speaker
) -> None:
    client = await Client.connect(model_server.ws_url)
    await client.stream_audio(speaker.say("What time is it?") + silence(800), realtime=False)
    result = await client.collect(timeout=60)
    text = result.first("stt_complete").text.lower()  # type: ignore[union-attr]
    assert "time" in text, text
    assert result.first("llm_complete").text.startswith("It's")  # type: ignore[union-attr]
    assert_spoken_reply(result, client.init.output_audio.sample_rate)
    await client.close()


async def test_spoken_question_push_to_talk(model_server: RunningServer, speaker: Speaker) -> None:
    client = await Client.connect(model_server.ws_url)
    result = await client.say(speaker.say("Hello! Who are you?"), realtime=False)
    text = result.first("stt_complete").text.lower()  # type: ignore[union-attr]
    assert "who are you" in text, text
    assert "offline agent" in result.first("llm_complete").text  # type: ignore[union-attr]
    assert_spoken_reply(result, client.init.output_audio.sample_rate)
    timings = result.first("metrics_update").timings  # type: ignore[union-attr]
    assert timings.stt_ms > 0 and timings.ttfa_ms >= timings.tts_ttfb_ms
    await client.close()


async def test_one_shot_wav_clip(model_server: RunningServer, speaker: Speaker) -> None:
    client = await Client.connect(model_server.ws_url)
    clip = encode_wav(speaker.say("Tell me a joke."), 16000)
    client.mark()
    await client.send_json({"type": "user_audio", "audio": base64.b64encode(clip).decode()})
    ack = await client.expect("ack")
    result = await client.collect(ack.utterance_id, timeout=60)
    assert "joke" in result.first("stt_complete").text.lower()  # type: ignore[union-attr]
    assert_spoken_reply(result, client.init.output_audio.sample_rate)
    await client.close()


async def test_stt_test_endpoint_transcribes_a_wav(
    model_server: RunningServer, speaker: Speaker
) -> None:
    client = await Client.connect(model_server.ws_url)  # wait for readiness
    await client.close()
    wav = encode_wav(speaker.say("Please show me the weather in Paris."), 16000)
    async with httpx.AsyncClient(base_url=model_server.base, timeout=60) as http:
        response = await http.post("/stt-test", files={"file": ("q.wav", wav, "audio/wav")})
    body = response.json()
    assert response.status_code == 200, body
    # the tool words must be heard; "Paris" comes out as "pairs" at the default 10 s window
    # (a known loss on free-form names, issue 14's note), so it is not asserted here
    assert "show me the weather" in body["text"].lower()
    assert body["model"] == "local:faster-whisper/base" and body["duration_ms"] > 0


async def test_fast_whisper_window_still_transcribes(speaker: Speaker) -> None:
    from voicewire.providers.local.whisper import WhisperSTT, _looks_degenerate
    from voicewire.providers.runner import ModelRunner

    runner = ModelRunner(1)
    stt = WhisperSTT(runner, threads=2, window_s=10.0)
    transcript = await stt.transcribe(speaker.say("Show me a bar chart of sales."), 16000)
    runner.shutdown()
    assert "bar chart" in transcript.text.lower() and transcript.usage.audio_seconds > 1
    assert _looks_degenerate("Hello? " * 20) and not _looks_degenerate(transcript.text)


async def test_short_first_word_is_not_clipped_by_vad(
    model_server: RunningServer, speaker: Speaker
) -> None:
    client = await Client.connect(model_server.ws_url)
    speech = speaker.say("Book a table for two in London tomorrow.")
    await client.stream_audio(silence(600) + speech + silence(900), realtime=False)
    result = await client.collect(timeout=60)
    text = result.first("stt_complete").text.lower()  # type: ignore[union-attr]
    assert text.startswith("book"), text
    await client.close()


async def test_spoken_chart_request_then_follow_up(
    model_server: RunningServer, speaker: Speaker
) -> None:
    client = await Client.connect(model_server.ws_url)
    question = "Show me a bar chart of sales: January 120, February 150, March 90."
    result = await client.say(speaker.say(question), realtime=False)
    call = result.first("tool_call_start")
    assert call is not None and call.name == "generate_chart", result.first("stt_complete")  # type: ignore[union-attr]
    assert call.arguments["labels"] == ["January", "February", "March"]  # type: ignore[union-attr]
    assert call.arguments["values"] == [120, 150, 90]  # type: ignore[union-attr]
    viz = result.first("visualization_data")
    assert viz is not None and viz.figure["data"][0]["type"] == "bar"  # type: ignore[union-attr]
    assert "February" in result.first("llm_complete").text  # type: ignore[union-attr]
    assert_spoken_reply(result, client.init.output_audio.sample_rate)

    follow = await client.say(speaker.say("Make that a pie chart."), realtime=False)
    call = follow.first("tool_call_start")
    assert call is not None and call.arguments["chart_type"] == "pie"  # type: ignore[union-attr]
    assert call.arguments["values"] == [120, 150, 90]  # type: ignore[union-attr]
    assert follow.first("visualization_data").figure["data"][0]["type"] == "pie"  # type: ignore[union-attr]

    async with httpx.AsyncClient(base_url=model_server.base) as http:
        charts = (await http.get(f"/data-viz/{client.session_id}")).json()
        page = await http.get(f"/data-viz/{client.session_id}", params={"format": "html"})
        script = await http.get("/static/plotly.min.js")
    assert [c["figure"]["data"][0]["type"] for c in charts["charts"]] == ["bar", "pie"]
    assert charts["last_visualization"]["figure"]["data"][0]["type"] == "pie"
    assert page.status_code == 200 and '<script src="/static/plotly.min.js">' in page.text
    assert '"type":"pie"' in page.text.replace(" ", "")
    assert script.status_code == 200 and "plotly" in script.text[:2000].lower()
    await client.close()


async def test_spoken_sentiment_and_live_data(
    model_server: RunningServer, speaker: Speaker
) -> None:
    client = await Client.connect(model_server.ws_url)
    said = "What is the sentiment of this review: I absolutely love this phone."
    result = await client.say(speaker.say(said), realtime=False)
    done = result.first("tool_call_complete")
    assert done is not None and done.name == "analyze_sentiment", result.first("stt_complete")  # type: ignore[union-attr]
    assert done.result["label"] == "positive"  # type: ignore[union-attr]
    assert "positive" in result.first("llm_complete").text  # type: ignore[union-attr]

    await client.send_json({"type": "session_update", "turn_detection": "server_vad"})
    await client.expect("ack")
    await client.stream_audio(
        speaker.say("How much memory are you using?") + silence(800), realtime=False
    )
    live = await client.collect(timeout=60)
    done = live.first("tool_call_complete")
    assert done is not None and done.result["metric"] == "memory", live.first("stt_complete")  # type: ignore[union-attr]
    assert "Memory use is" in live.first("llm_complete").text  # type: ignore[union-attr]
    assert_spoken_reply(live, client.init.output_audio.sample_rate)
    await client.close()


async def test_data_viz_unknown_session(model_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=model_server.base) as http:
        assert (await http.get("/data-viz/s_nope")).status_code == 404
        assert (await http.get("/data-viz/s_nope", params={"format": "html"})).status_code == 404
