"""Cloud providers through the real server, against a fake OpenAI/ElevenLabs on loopback.

Each test configures the server as a user would (settings only), scripts the fake API, and
asserts what the user sees: the frames of the utterance.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import RunningServer, Speaker, check_invariants, serve, start_server
from tests.fakecloud import ELEVEN_KEY, OPENAI_KEY, FakeCloud, Fault, Step, wav_info
from voicewire.client import Client, TurnResult

Make = Callable[..., RunningServer]
CHART = json.dumps({"chart_type": "bar", "title": "Sales", "labels": ["Q1", "Q2", "Q3"],
                    "values": [3, 5, 4]})  # fmt: skip


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    fake = FakeCloud()
    srv = serve(fake.app)
    fake.base = srv.base  # type: ignore[attr-defined]
    yield fake
    fake.release()
    srv.stop()


@pytest.fixture
def voice(cloud: FakeCloud) -> Iterator[Make]:
    """A voicewire server whose stages are configured like a user's, pointed at the fake."""
    servers: list[RunningServer] = []
    base: str = cloud.base  # type: ignore[attr-defined]

    def make(**overrides: Any) -> RunningServer:
        settings: dict[str, Any] = {
            "openai_base_url": f"{base}/v1",
            "openai_api_key": OPENAI_KEY,
            "elevenlabs_base_url": base,
            "elevenlabs_api_key": ELEVEN_KEY,
            "stt": "openai:whisper-1",
            "llm": "openai:gpt-4o-mini",
            "tts": "openai:tts-1",
            "provider_retry_max_wait_s": 1.5,
            **overrides,
        }
        srv = start_server(None, **settings)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


async def ask(srv: RunningServer, text: str = "hello") -> TurnResult:
    """One typed turn on a new session."""
    return await _one_turn(srv, lambda c: c.ask(text))


async def say(srv: RunningServer, pcm: bytes) -> TurnResult:
    """One spoken turn (16 kHz PCM, sent at once) on a new session."""
    return await _one_turn(srv, lambda c: c.say(pcm, realtime=False))


async def _one_turn(
    srv: RunningServer, turn: Callable[[Client], Awaitable[TurnResult]]
) -> TurnResult:
    client = await Client.connect(srv.ws_url)
    try:
        result = await turn(client)
    finally:
        await client.close()
    check_invariants([r.frame for r in result.frames])
    return result


def errors(result: TurnResult) -> list[Any]:
    return result.of_type("error")


def text_of(result: TurnResult) -> str:
    return "".join(f.delta for f in result.of_type("llm_streaming"))  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ happy paths


async def test_openai_turn_with_parallel_tool_calls(voice: Make, cloud: FakeCloud) -> None:
    cloud.reply(
        Step(
            text=["Let me", " look."],
            calls=[
                ("generate_chart", CHART),
                ("analyze_sentiment", json.dumps({"text": "I love this"})),
            ],
        ),
        Step(
            text=["Here is", " your chart.", " Sales peaked", " in Q2."],
            prompt_tokens=300,
            completion_tokens=20,
            cached_tokens=100,
        ),
    )
    srv = voice()
    result = await ask(srv, "chart my sales and score 'I love this'")
    assert result.status == "completed" and not errors(result)
    starts = result.of_type("tool_call_start")
    assert [(s.name, s.arguments) for s in starts] == [  # type: ignore[attr-defined]
        ("generate_chart", json.loads(CHART)),
        ("analyze_sentiment", {"text": "I love this"}),
    ]
    done = result.of_type("tool_call_complete")
    assert all(d.error is None for d in done)  # type: ignore[attr-defined]
    assert len(result.of_type("visualization_data")) == 1
    assert text_of(result) == "Let me look.Here is your chart. Sales peaked in Q2."
    assert result.first("tts_start").sample_rate == 24_000  # type: ignore[union-attr]
    assert len(result.audio) > 24_000  # the fake speaks 60 ms per character

    chats = cloud.requests("/chat/completions")
    assert len(chats) == 2
    first, second = chats[0].body, chats[1].body
    assert chats[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert first["model"] == "gpt-4o-mini" and first["stream"] is True
    assert first["stream_options"] == {"include_usage": True}
    assert first["messages"][0]["role"] == "system"
    assert {t["function"]["name"] for t in first["tools"]} >= {
        "generate_chart",
        "analyze_sentiment",
    }
    # the follow-up carries the assistant's calls and one tool message per call, in order
    calls = second["messages"][-3]
    assert [c["id"] for c in calls["tool_calls"]] == ["call_0_fake", "call_1_fake"]
    assert [m["tool_call_id"] for m in second["messages"][-2:]] == ["call_0_fake", "call_1_fake"]
    assert "positive" in second["messages"][-1]["content"]
    speech = cloud.requests("/audio/speech")
    assert {s.body["model"] for s in speech} == {"tts-1"}
    assert {s.body["voice"] for s in speech} == {"alloy"}

    # priced from the reported usage: 91 + 300 tokens in (100 cached), 38 + 20 out
    cost = result.first("cost_update").utterance  # type: ignore[union-attr]
    expected_llm = (
        Decimal(291) * Decimal("0.15") + 100 * Decimal("0.075") + 58 * Decimal("0.60")
    ) / 10**6
    assert Decimal(cost["llm"]) == expected_llm.quantize(Decimal("1e-10"))
    chars = sum(len(s.body["input"]) for s in speech)
    assert Decimal(cost["tts"]) == Decimal(chars) * Decimal("0.015") / 1000


async def test_reasoning_effort_is_sent_where_it_belongs(voice: Make, cloud: FakeCloud) -> None:
    await ask(voice(llm="openai:gpt-6-luna"))  # its tool calls need "none"
    await ask(voice(llm="openai:gpt-5-mini", llm_reasoning_effort="minimal"))
    await ask(voice())  # gpt-4o-mini is no reasoning model: the field would be refused
    sent = [c.body.get("reasoning_effort") for c in cloud.requests("/chat/completions")]
    assert sent == ["none", "minimal", None]


async def test_spoken_turn_on_all_three_cloud_stages(
    voice: Make, cloud: FakeCloud, speaker: Speaker
) -> None:
    """Microphone audio -> OpenAI STT -> OpenAI LLM -> ElevenLabs TTS, through the server."""
    cloud.transcript = "What is the weather like?"
    cloud.reply(Step(text=["It is sunny", " and warm today."]))
    srv = voice(tts="elevenlabs:eleven_flash_v2_5", tts_sample_rate=16000)
    pcm = speaker.say("What is the weather like?")
    client = await Client.connect(srv.ws_url)
    assert client.init.output_audio.sample_rate == 16_000
    result = await client.say(pcm, realtime=False)
    await client.close()
    check_invariants([r.frame for r in result.frames])
    assert result.status == "completed" and not errors(result)
    assert result.first("stt_complete").text == "What is the weather like?"  # type: ignore[union-attr]
    upload = cloud.requests("/audio/transcriptions")[0].body
    assert upload["model"] == "whisper-1" and upload["language"] == "en"
    name, ctype, wav = upload["file"]
    assert (name, ctype) == ("utterance.wav", "audio/wav")
    rate, channels, seconds = wav_info(wav)
    assert (rate, channels) == (16_000, 1)
    assert seconds >= len(pcm) / 2 / 16_000 - 0.5  # the utterance, not a fragment of it
    el = cloud.requests("/text-to-speech/")
    assert el and all(s.path.endswith("/21m00Tcm4TlvDq8ikWAM/stream") for s in el)
    assert {s.body["model_id"] for s in el} == {"eleven_flash_v2_5"}
    assert result.first("tts_start").sample_rate == 16_000  # type: ignore[union-attr]
    said = "".join(s.body["text"] for s in el)
    assert len(result.audio) == pytest.approx(len(said) * 0.06 * 16_000 * 2, rel=0.01)
    cost = result.first("cost_update").utterance  # type: ignore[union-attr]
    assert (
        Decimal(cost["stt"]) > 0
        and Decimal(cost["tts"]) == Decimal(len(said)) * Decimal("0.05") / 1000
    )


async def test_elevenlabs_stt_uploads_raw_16k_pcm(voice: Make, cloud: FakeCloud) -> None:
    srv = voice(stt="elevenlabs:scribe_v1", tts="simulated:zero")
    tone = (3000 * np.sin(np.arange(16_000) / 16_000 * 2 * np.pi * 220)).astype("<i2").tobytes()
    result = await say(srv, tone)
    assert result.first("stt_complete").text == cloud.transcript  # type: ignore[union-attr]
    form = cloud.requests("/speech-to-text")[0].body
    assert form["model_id"] == "scribe_v1" and form["file_format"] == "pcm_s16le_16"
    assert form["file"][2] == tone  # 16 kHz in, 16 kHz out: the very samples


async def test_output_rate_resamples_every_provider(voice: Make, cloud: FakeCloud) -> None:
    cloud.reply(Step(text=["One short sentence."]))
    srv = voice(output_sample_rate=8000)
    result = await ask(srv)
    assert result.first("tts_start").sample_rate == 8000  # type: ignore[union-attr]
    said = "".join(s.body["input"] for s in cloud.requests("/audio/speech"))
    assert len(result.audio) / 2 == pytest.approx(len(said) * 0.06 * 8000, rel=0.01)


# ------------------------------------------------------------------------------ faults: LLM


async def test_429_with_retry_after_is_waited_then_retried(voice: Make, cloud: FakeCloud) -> None:
    cloud.fault("chat", Fault(status=429, headers={"retry-after": "1"}))
    result = await ask(voice())
    assert result.status == "completed" and not errors(result)
    first, second = cloud.requests("/chat/completions")
    assert second.at - first.at >= 0.95  # Retry-After honoured, not just backoff


async def test_429_asking_too_long_a_wait_falls_back_at_once(voice: Make, cloud: FakeCloud) -> None:
    cloud.fault("chat", Fault(status=429, headers={"retry-after": "30"}))
    srv = voice(llm="openai:gpt-4o-mini,local")
    result = await ask(srv)
    assert len(cloud.requests("/chat/completions")) == 1  # not retried: 30 s is no voice turn
    (fb,) = result.of_type("provider_fallback")
    assert (fb.stage, fb.failed, fb.used) == ("llm", "openai:gpt-4o-mini", "local:rules-agent")  # type: ignore[attr-defined]
    assert "429" in fb.reason and "retry after 30 s" in fb.reason  # type: ignore[attr-defined]
    assert result.status == "completed" and not errors(result) and text_of(result)
    async with httpx.AsyncClient(base_url=srv.base) as http:
        metrics = (await http.get("/metrics")).json()
        prom = (await http.get("/metrics/prometheus")).text
    assert metrics["fallbacks"] == [{"stage": "llm", "failed": "openai:gpt-4o-mini", "count": 1}]
    series = r'^voicewire_provider_fallbacks_total\{provider="openai:gpt-4o-mini",stage="llm",'
    assert re.search(series + r'worker="[^"]+"\} 1\.0$', prom, re.M)


async def test_quota_429_is_not_retried(voice: Make, cloud: FakeCloud) -> None:
    cloud.fault("chat", Fault(status=429, code="insufficient_quota"))
    result = await ask(voice())
    (err,) = errors(result)
    assert err.code == "llm_failed" and err.stage == "llm"
    assert "quota exhausted" in err.message and "exceeded your current quota" in err.message
    assert len(cloud.requests("/chat/completions")) == 1


async def test_500s_are_retried_with_backoff(voice: Make, cloud: FakeCloud) -> None:
    cloud.fault("chat", Fault(status=500), Fault(status=503))
    result = await ask(voice())
    assert result.status == "completed" and text_of(result) == "Hello there."
    assert len(cloud.requests("/chat/completions")) == 3


async def test_500s_past_the_retries_fail_the_utterance_not_the_session(
    voice: Make, cloud: FakeCloud
) -> None:
    cloud.fault("chat", Fault(status=500), Fault(status=500), Fault(status=500))
    srv = voice(provider_retries=2)
    client = await Client.connect(srv.ws_url)
    failed = await client.ask("hello")
    (err,) = errors(failed)
    assert (
        err.code == "llm_failed"
        and "HTTP 500" in err.message
        and "server had an error" in err.message
    )
    assert failed.status == "failed" and not failed.of_type("tts_chunk")
    again = await client.ask("hello again")  # same session, the provider is back
    await client.close()
    async with httpx.AsyncClient(base_url=srv.base) as http:
        assert (await http.get("/metrics")).json()["errors"] == {"llm_failed": 1}
    assert again.status == "completed" and again.audio
    assert len(cloud.requests("/chat/completions")) == 4


async def test_401_is_reported_and_never_retried(voice: Make, cloud: FakeCloud) -> None:
    result = await ask(voice(openai_api_key="sk-wrong"), "hi")
    (err,) = errors(result)
    assert err.code == "llm_failed" and "401 unauthorised" in err.message
    assert "sk-wrong" not in err.message
    assert len(cloud.requests("/chat/completions")) == 1


async def test_stream_cut_mid_reply_keeps_what_was_said(voice: Make, cloud: FakeCloud) -> None:
    cloud.reply(Step(text=["The first sentence is complete.", " The second was", " never"]))
    cloud.fault("chat", Fault(cut_after=3))  # role chunk + two text chunks, then the drop
    result = await ask(voice(llm="openai:gpt-4o-mini,local"))
    assert text_of(result) == "The first sentence is complete. The second was"
    (err,) = errors(result)
    assert err.code == "llm_failed" and "cut short" in err.message
    assert not result.of_type("provider_fallback")  # too late to switch: the user heard it
    spoken = [f.text for f in result.of_type("assistant_text")]  # type: ignore[attr-defined]
    assert spoken[0] == "The first sentence is complete." and result.audio
    assert result.status == "failed"
    assert len(cloud.requests("/chat/completions")) == 1  # never retried once streaming


async def test_malformed_event_before_any_text_is_retried(voice: Make, cloud: FakeCloud) -> None:
    cloud.fault("chat", Fault(malformed_at=0))
    result = await ask(voice())
    assert result.status == "completed" and text_of(result) == "Hello there."
    assert len(cloud.requests("/chat/completions")) == 2


async def test_malformed_event_mid_reply_fails_clearly(voice: Make, cloud: FakeCloud) -> None:
    cloud.reply(Step(text=["Fine so far.", " Then"]))
    cloud.fault("chat", Fault(malformed_at=2))
    result = await ask(voice())
    (err,) = errors(result)
    assert err.code == "llm_failed" and "malformed response" in err.message
    assert text_of(result) == "Fine so far."


async def test_stream_ending_without_finish_reason_is_not_taken_as_done(
    voice: Make, cloud: FakeCloud
) -> None:
    cloud.reply(Step(text=["Half a", " thought"]))
    cloud.fault("chat", Fault(end_after=2))  # a clean end of body: no finish_reason, no [DONE]
    result = await ask(voice())
    (err,) = errors(result)
    assert err.code == "llm_failed" and "ended early" in err.message
    assert text_of(result) == "Half a" and result.status == "failed"


async def test_error_event_inside_the_stream(voice: Make, cloud: FakeCloud) -> None:
    cloud.reply(Step(text=["Part one.", " Part two."]))
    cloud.fault("chat", Fault(error_at=2))  # after "Part one." was streamed
    srv = voice()
    client = await Client.connect(srv.ws_url)
    cut = await client.ask("hello")
    (err,) = errors(cut)
    assert "The server is overloaded." in err.message and text_of(cut) == "Part one."
    cloud.fault("chat", Fault(error_at=0))  # before anything: retried
    cloud.reply(Step(text=["Lost."]), Step(text=["Recovered."]))  # one per attempt
    whole = await client.ask("again")
    await client.close()
    assert whole.status == "completed" and text_of(whole) == "Recovered."


async def test_slow_first_byte_times_out_and_falls_back(voice: Make, cloud: FakeCloud) -> None:
    cloud.fault("chat", Fault(hang=True))
    result = await ask(voice(llm="openai:gpt-4o-mini,local", llm_timeout_s=0.5, provider_retries=0))
    (fb,) = result.of_type("provider_fallback")
    assert "timed out" in fb.reason  # type: ignore[attr-defined]
    assert result.status == "completed" and text_of(result)
    assert result.first("metrics_update").timings.llm_ttft_ms >= 500  # type: ignore[union-attr]


async def test_slow_first_byte_without_fallback_is_an_error(voice: Make, cloud: FakeCloud) -> None:
    cloud.fault("chat", Fault(hang=True), Fault(hang=True))
    result = await ask(voice(llm_timeout_s=0.3, provider_retries=1))
    (err,) = errors(result)
    assert err.code == "llm_failed" and "timed out" in err.message
    assert len(cloud.requests("/chat/completions")) == 2  # one retry, then give up


async def test_cancel_closes_the_provider_request(voice: Make, cloud: FakeCloud) -> None:
    cloud.fault("chat", Fault(hang=True))
    srv = voice(llm_timeout_s=60)
    client = await Client.connect(srv.ws_url)
    await client.send_json({"type": "user_text", "text": "hello"})
    uid = (await client.expect("ack")).utterance_id
    await client.expect("llm_start")
    assert await asyncio.to_thread(cloud.arrived.wait, 10)  # the request is at the fake
    await client.send_json({"type": "cancel", "utterance_id": uid})
    result = await client.collect(uid)
    await client.close()
    assert result.status == "cancelled"
    assert await asyncio.to_thread(cloud.abandoned.wait, 10)  # the HTTP request was closed


async def test_invalid_tool_arguments_go_back_to_the_model(voice: Make, cloud: FakeCloud) -> None:
    cloud.reply(Step(calls=[("generate_chart", '{"chart_type": "bar", "labels": [')]),
                Step(text=["Sorry, let me try that differently."]))  # fmt: skip
    result = await ask(voice())
    (done,) = result.of_type("tool_call_complete")
    assert "not a JSON object" in done.error  # type: ignore[attr-defined]
    followup = cloud.requests("/chat/completions")[1].body["messages"][-1]
    assert followup["role"] == "tool" and "not a JSON object" in followup["content"]
    assert result.status == "completed"


# ------------------------------------------------------------------------------ faults: STT, TTS


async def test_stt_500_is_retried(voice: Make, cloud: FakeCloud) -> None:
    cloud.fault("transcriptions", Fault(status=502))
    result = await say(voice(), bytes(16_000))
    assert result.first("stt_complete").text == cloud.transcript  # type: ignore[union-attr]
    assert len(cloud.requests("/audio/transcriptions")) == 2


async def test_stt_401_fails_the_utterance(voice: Make, cloud: FakeCloud) -> None:
    cloud.fault("transcriptions", Fault(status=401))
    result = await say(voice(), bytes(16_000))
    (err,) = errors(result)
    assert err.code == "stt_failed" and err.stage == "stt" and "401" in err.message
    assert result.status == "failed" and not result.of_type("llm_start")


async def test_tts_cut_mid_audio_gives_a_text_reply(voice: Make, cloud: FakeCloud) -> None:
    cloud.reply(Step(text=["First sentence here.", " Second sentence here."]))
    cloud.fault("speech", Fault(cut_after=2))
    result = await ask(voice())
    (err,) = errors(result)
    assert err.code == "tts_failed" and "cut short" in err.message
    texts = [f.text for f in result.of_type("assistant_text")]  # type: ignore[attr-defined]
    assert texts == ["First sentence here.", "Second sentence here."]  # words still arrive
    assert 0 < len(result.audio) < 2 * 24_000  # what had arrived before the cut was played
    assert len(cloud.requests("/audio/speech")) == 1  # the failed TTS is not asked again


async def test_elevenlabs_401_gives_a_text_reply(voice: Make, cloud: FakeCloud) -> None:
    cloud.reply(Step(text=["Still here."]))
    result = await ask(voice(tts="elevenlabs", elevenlabs_api_key="xi-wrong"))
    (err,) = errors(result)
    assert err.code == "tts_failed" and "401" in err.message and "Invalid API key" in err.message
    assert [f.text for f in result.of_type("assistant_text")] == ["Still here."]  # type: ignore[attr-defined]
    assert not result.audio and result.status == "failed"


async def test_tts_falls_back_and_is_resampled(voice: Make, cloud: FakeCloud) -> None:
    cloud.reply(Step(text=["Spoken by the fallback."]))
    cloud.fault("el_tts", Fault(status=500), Fault(status=500))
    result = await ask(voice(tts="elevenlabs,simulated:zero", provider_retries=1))
    (fb,) = result.of_type("provider_fallback")
    assert (fb.stage, fb.failed, fb.used) == (
        "tts",
        "elevenlabs:eleven_flash_v2_5",
        "simulated:zero",
    )  # type: ignore[attr-defined]
    assert result.first("tts_start").sample_rate == 24_000  # type: ignore[union-attr]
    assert result.audio and result.status == "completed"


# ------------------------------------------------------------------------------ configuration


async def test_start_up_checks_every_endpoint_and_reports_a_bad_key(
    voice: Make, cloud: FakeCloud
) -> None:
    srv = voice(warmup=True, stt="elevenlabs", elevenlabs_api_key="xi-wrong")
    async with httpx.AsyncClient(base_url=srv.base) as http:
        client = await Client.connect(srv.ws_url)  # served once the start-up has finished
        await client.close()
        health = (await http.get("/health")).json()
    endpoints = health["endpoints"]
    assert endpoints["openai"] == "ok"
    assert endpoints["elevenlabs-stt"].startswith("HTTP 401 unauthorised")
    # STT has no other provider: not ready, and /health says why (issue 12)
    assert health["status"] == "degraded"
    assert health["unusable"]["stt"].startswith("elevenlabs: HTTP 401 unauthorised")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_an_unreachable_provider_says_why(voice: Make) -> None:
    port = closed_port()
    srv = voice(
        warmup=True,
        llm="openai-compatible:llama3",
        compat_base_url=f"http://127.0.0.1:{port}/v1",
        provider_retries=0,
    )
    async with httpx.AsyncClient(base_url=srv.base) as http:
        client = await Client.connect(srv.ws_url)
        await client.close()
        health = await http.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    why = f"cannot reach 127.0.0.1:{port}: connection refused"
    assert health.json()["unusable"] == {"llm": f"openai-compatible: {why}"}
    result = await ask(srv)
    assert [e.code for e in errors(result)] == ["llm_failed"]
    assert why in errors(result)[0].message
    # with a fallback the stage can still serve: ready
    fallback = voice(
        warmup=True,
        llm="openai-compatible:llama3,local",
        compat_base_url=f"http://127.0.0.1:{port}/v1",
    )
    async with httpx.AsyncClient(base_url=fallback.base) as http:
        client = await Client.connect(fallback.ws_url)
        await client.close()
        health = await http.get("/health")
    assert health.status_code == 200 and "unusable" not in health.json()


def test_missing_key_fails_at_start_up(cloud: FakeCloud) -> None:
    from voicewire.providers import ConfigError

    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        start_server(None, llm="openai:gpt-4o-mini", openai_api_key=None)
    with pytest.raises(ConfigError, match="unknown openai llm model 'gpt-nope'"):
        start_server(None, llm="openai:gpt-nope", openai_api_key="sk-x")
    with pytest.raises(ConfigError, match="VOICEWIRE_COMPAT_BASE_URL"):
        start_server(None, llm="openai-compatible:llama3.2")


async def test_openai_compatible_server_by_base_url(voice: Make, cloud: FakeCloud) -> None:
    """Ollama, vLLM or llama.cpp's server: any model name, the server's URL, no price."""
    cloud.reply(Step(text=["Hello from", " llama."]))
    base: str = cloud.base  # type: ignore[attr-defined]
    srv = voice(
        llm="openai-compatible:llama3.2:3b",
        compat_base_url=f"{base}/v1",
        compat_api_key=OPENAI_KEY,
        openai_api_key=None,
        openai_base_url="http://127.0.0.1:9/unused",
        stt="simulated:zero",
        tts="simulated:zero",
        llm_max_tokens=200,
    )
    result = await ask(srv)
    assert text_of(result) == "Hello from llama." and result.status == "completed"
    (chat,) = cloud.requests("/chat/completions")
    assert chat.body["model"] == "llama3.2:3b"
    assert chat.body["max_tokens"] == 200 and "max_completion_tokens" not in chat.body
    assert result.first("cost_update").utterance["llm"] == "0"  # type: ignore[union-attr]


async def test_a_stage_that_fell_back_is_priced_per_provider(voice: Make, cloud: FakeCloud) -> None:
    first, second = "The first sentence is fine.", "The second one falls back."
    cloud.reply(Step(text=[first, " ", second]))
    cloud.fault("speech", Fault(), Fault(status=500), Fault(status=500))
    result = await ask(voice(tts="openai:tts-1,simulated:zero", provider_retries=1))
    (fb,) = result.of_type("provider_fallback")
    assert fb.used == "simulated:zero"  # type: ignore[attr-defined]
    tts = Decimal(result.first("cost_update").utterance["tts"])  # type: ignore[union-attr]
    # tts-1 at $15 per 1M characters; the simulated TTS is priced as eleven_flash_v2_5 ($0.05/1K)
    assert tts == len(first) * Decimal("0.015") / 1000 + len(second) * Decimal("0.05") / 1000
