"""Pure parts of the provider layer: tool-call assembly, breakers, fallback chains, retry hints.

No network and no clocks: breakers take the time as an argument, chains run on fakes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from voicewire.config import Settings
from voicewire.providers import ConfigError, parse
from voicewire.providers.base import Fallback, ProviderError, TextDelta, UsageReport
from voicewire.providers.cloud import net
from voicewire.providers.cloud.openai_llm import ToolCallAssembler
from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT, FakeTTS
from voicewire.providers.fallback import (
    Breaker,
    FallbackLLM,
    FallbackSTT,
    FallbackTTS,
    ResampledTTS,
)

FAIL = FakeLLMStep(fail_after_tokens=0)  # fails before it streams anything

# ------------------------------------------------------------------------------ tool calls


def test_openai_fragments_assemble_into_parallel_calls() -> None:
    calls = ToolCallAssembler()
    calls.add(0, "call_a", "get_weather", "")
    calls.add(0, None, None, '{"city":')
    calls.add(1, "call_b", "get_time", "")
    calls.add(0, None, None, '"Paris"}')  # fragments of several calls may interleave
    calls.add(1, None, None, "{}")
    out = calls.finish()
    assert [(c.call_id, c.name, c.arguments) for c in out] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_time", {}),
    ]


def test_ollama_style_index_reuse_and_repeated_ids() -> None:
    calls = ToolCallAssembler()
    calls.add(0, "c1", "a", '{"x": 1}')  # a whole call in one delta
    calls.add(0, "c2", "b", '{"y":')  # the same index, a new id: a new call
    calls.add(0, "c2", None, " 2}")  # the id repeated on a later fragment: the same call
    out = calls.finish()
    assert [(c.call_id, c.name, c.arguments) for c in out] == [
        ("c1", "a", {"x": 1}),
        ("c2", "b", {"y": 2}),
    ]


def test_invalid_arguments_are_kept_for_the_model_to_see() -> None:
    calls = ToolCallAssembler()
    calls.add(0, "c1", "chart", '{"labels": [')
    calls.add(1, "c2", "chart", "[1, 2]")  # JSON, but not an object
    first, second = calls.finish()
    assert first.arguments == {} and first.invalid_arguments == '{"labels": ['
    assert second.invalid_arguments == "[1, 2]"


def test_a_call_without_an_id_gets_a_stable_one() -> None:
    calls = ToolCallAssembler()
    calls.add(None, None, "f", json.dumps({"a": 1}))
    (only,) = calls.finish()
    assert only.call_id == "call_0" and only.arguments == {"a": 1}


# ------------------------------------------------------------------------------ breaker


def test_breaker_opens_after_consecutive_failures_and_probes_after_cooldown() -> None:
    b = Breaker(failures=3, cooldown_s=30)
    for t in (0, 1):
        b.record(False, t)
        assert b.allows(t)
    b.record(True, 2)  # a success resets the streak
    for t in (3, 4, 5):
        b.record(False, t)
    assert not b.allows(6) and not b.allows(34.9)
    assert b.allows(35)  # one probe after the cooldown...
    b.record(False, 35)
    assert not b.allows(36)  # ...fails: open again at once
    assert b.allows(65)
    b.record(True, 65)
    assert b.allows(66) and not b.is_open


# ------------------------------------------------------------------------------ chains


async def test_stt_chain_falls_back_and_names_who_served() -> None:
    bad = FakeSTT(error=ProviderError("cloud:stt", "HTTP 503"))
    bad.name = "cloud:stt"
    good = FakeSTT(["hello"])
    chain = FallbackSTT([bad, good])
    transcript = await chain.transcribe(bytes(3200), 16_000)
    assert transcript.text == "hello" and transcript.provider == "fake:stt"
    (fb,) = transcript.fallbacks
    assert (fb.stage, fb.failed, fb.used) == ("stt", "cloud:stt", "fake:stt")


async def test_llm_chain_stamps_usage_with_the_serving_provider() -> None:
    bad = FakeLLM([FAIL])
    bad.name = "cloud:llm"
    chain = FallbackLLM([bad, FakeLLM([FakeLLMStep("Hi there.")])])
    events = [e async for e in chain.stream([{"role": "user", "content": "x"}], [])]
    assert isinstance(events[0], Fallback) and events[0].failed == "cloud:llm"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hi there."
    (usage,) = [e for e in events if isinstance(e, UsageReport)]
    assert usage.provider == "fake:llm"


async def test_llm_chain_does_not_switch_once_text_has_streamed() -> None:
    cut = FakeLLM([FakeLLMStep("One. Two. Three.", fail_after_tokens=1)])
    backup = FakeLLM([FakeLLMStep("Backup.")])
    chain = FallbackLLM([cut, backup])
    seen: list[object] = []
    with pytest.raises(ProviderError):
        async for event in chain.stream([{"role": "user", "content": "x"}], []):
            seen.append(event)
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["One. "]
    assert not backup.calls


async def test_open_breaker_skips_the_member_but_never_the_last() -> None:
    now = [0.0]
    bad = FakeLLM([FAIL])
    bad.name = "cloud:llm"
    good = FakeLLM()
    chain = FallbackLLM([bad, good], failures=2, cooldown_s=10)
    chain.chain.clock = lambda: now[0]
    for _ in range(2):
        _ = [e async for e in chain.stream([], [])]
    assert len(bad.calls) == 2
    events = [e async for e in chain.stream([], [])]
    assert len(bad.calls) == 2  # skipped while open: no timeout paid
    (notice,) = [e for e in events if isinstance(e, Fallback)]  # and the client is told
    assert notice.failed == "cloud:llm" and notice.used == "fake:llm"
    assert "skipped after 2 consecutive failures; tried again in 10 s" in notice.reason
    now[0] = 10.0
    _ = [e async for e in chain.stream([], [])]
    assert len(bad.calls) == 3  # probed after the cooldown
    only_bad = FallbackLLM([good, bad], failures=1, cooldown_s=10)
    only_bad.chain.clock = lambda: now[0]
    good.steps = [FAIL]
    for _ in range(3):  # the last member is tried even when its breaker is open
        with pytest.raises(ProviderError):
            _ = [e async for e in only_bad.stream([], [])]
    assert len(bad.calls) == 6


async def test_tts_chain_speaks_at_the_first_members_rate() -> None:
    first = FakeTTS(sample_rate=24_000, fail_on_call=1)
    second = FakeTTS(sample_rate=16_000, ms_per_char=10)
    chain = FallbackTTS([first, second])
    assert chain.sample_rate == 24_000
    out = [e async for e in chain.synthesize("twenty characters!!")]
    pcm = b"".join(e for e in out if isinstance(e, bytes))
    assert isinstance(out[0], Fallback)
    assert len(pcm) / 2 == pytest.approx(19 * 0.010 * 24_000, abs=2)


async def test_resampling_keeps_a_tone_continuous_across_odd_chunks() -> None:
    class Tone:
        name = "tone"
        sample_rate = 22_050

        async def synthesize(self, text: str):  # type: ignore[no-untyped-def]
            t = np.arange(22_050) / 22_050
            pcm = (10_000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
            for i in range(0, len(pcm), 1_001):  # odd sizes split samples
                yield pcm[i : i + 1_001]

    out = b"".join([c async for c in ResampledTTS(Tone(), 16_000).synthesize("x")])  # type: ignore[arg-type]
    y = np.frombuffer(out, "<i2").astype(float)
    assert len(y) == pytest.approx(16_000, abs=2)
    t = np.arange(len(y)) / 16_000
    ideal = 10_000 * np.sin(2 * np.pi * 300 * t)
    body = slice(200, -200)  # the resampler's filter edges aside, it is the same tone
    assert np.max(np.abs(y[body] - ideal[body])) < 300


# ------------------------------------------------------------------------------ retry hints


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "250", "retry-after": "3"}, 0.25),
        ({"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}, 0.0),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert net.retry_after(headers) == expected


def test_error_bodies_of_both_vendors_are_read() -> None:
    openai_body = (
        b'{"error": {"message": "Rate limit", "type": "x", "code": "rate_limit_exceeded"}}'
    )
    assert net.error_message(openai_body) == ("Rate limit", "rate_limit_exceeded")
    eleven = b'{"detail": {"status": "quota_exceeded", "message": "No credits"}}'
    assert net.error_message(eleven) == ("No credits", "quota_exceeded")
    validation = b'{"detail": [{"loc": ["body", "text"], "msg": "field required"}]}'
    assert net.error_message(validation)[0] == "field required"
    assert net.error_message(b"<html>Bad Gateway</html>")[0] == "<html>Bad Gateway</html>"


# ------------------------------------------------------------------------------ configuration


def test_chains_parse_with_defaults_and_errors_name_the_fix() -> None:
    s = Settings(llm="openai, local", openai_api_key="sk-x", tts="elevenlabs:eleven_v3",
                 elevenlabs_api_key="xi")  # fmt: skip
    assert [(p.kind, p.model) for p in parse(s, "llm")] == [
        ("openai", "gpt-4o-mini"),
        ("local", ""),
    ]
    assert parse(s, "tts")[0].model == "eleven_v3"
    with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY"):
        parse(Settings(tts="elevenlabs", elevenlabs_api_key=None), "tts")
    with pytest.raises(ConfigError, match="empty entry"):
        parse(Settings(llm="local,"), "llm")
    with pytest.raises(ConfigError, match="choose one of"):
        parse(Settings(stt="llama-cpp:x.gguf"), "stt")  # an LLM kind is not an STT


def test_speculative_stt_is_off_by_default_for_paid_stt() -> None:
    assert Settings().speculative_stt_ms == 120
    assert Settings(stt="openai", openai_api_key="k").speculative_stt_ms == 0
    assert Settings(stt="openai", speculative_stt_ms=80).speculative_stt_ms == 80
