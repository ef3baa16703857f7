"""Simulated providers: remote-provider latency with no model, for load tests and capacity.

They behave like network providers (time to first token or byte, per-token pace) and report
usage like real ones, so costs flow. Profiles by name:

- ``zero``: no delay at all; measures the framework's own cost.
- ``realistic``: workload W1 of ``shared/bench/pipecat_anchor`` (LLM 300 ms to first token,
  then 15 ms per token, 60 tokens in 3 sentences; TTS 150 ms to first byte, 3.0 s of 16 kHz
  audio in all), so figures compare with Pipecat's side by side.
- ``seed``: latencies like the original design's cloud stack, about 2-4 s per turn.

Token *i* is due at start + first + i * per_token (absolute deadlines, as the anchor does), so
timer overshoot does not pile up.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache

from voicewire.providers.base import (
    LLMEvent,
    Message,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
    Transcript,
    TTSEvent,
    Usage,
    UsageReport,
)

# The anchor's W1 reply, tokenized the same way: 60 tokens, 3 sentences.
REPLY_TEXT = (
    "Sure, I can help you plan a relaxed weekend trip to the coast, with quiet beaches "
    "and good local food. "
    "The best plan is to leave early on Saturday morning, before the highway traffic "
    "builds up. "
    "Pack a few light layers, because the weather near the water can change quickly "
    "in the afternoon."
)
REPLY_TOKENS = re.findall(r" ?\w+|[^\w\s]", REPLY_TEXT)
SAMPLE_RATE = 16_000
REPLY_AUDIO_S = 3.0  # 1.0 s per sentence, spread over characters


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    llm_first_token_s: float
    llm_per_token_s: float
    tts_first_byte_s: float
    stt_s_per_audio_s: float
    stt_base_s: float


PROFILES: dict[str, Profile] = {
    "zero": Profile("zero", 0.0, 0.0, 0.0, 0.0, 0.0),
    "realistic": Profile("realistic", 0.300, 0.015, 0.150, 0.05, 0.100),
    "seed": Profile("seed", 1.200, 0.040, 0.600, 0.15, 0.300),
}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name or "realistic"]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}"
        ) from None


async def _until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


class SimulatedSTT:
    def __init__(self, p: Profile, text: str = "Can you help me plan a weekend trip to the coast?"):
        self.p = p
        self.name = f"simulated:{p.name}"
        self.text = text

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        seconds = len(pcm) / 2 / sample_rate
        delay = self.p.stt_base_s + self.p.stt_s_per_audio_s * seconds
        if delay:
            await asyncio.sleep(delay)
        return Transcript(self.text, Usage(audio_seconds=seconds))


class SimulatedLLM:
    def __init__(self, p: Profile, tool_call: bool = False) -> None:
        self.p = p
        self.name = f"simulated:{p.name}"
        self.tool_call = tool_call

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[LLMEvent]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        prompt = sum(len(str(m.get("content") or "")) for m in messages) // 4
        answered = bool(messages) and messages[-1].get("role") == "tool"
        if self.tool_call and not answered and any(t.name == "get_realtime_data" for t in tools):
            await _until(start + self.p.llm_first_token_s)
            yield ToolCallRequest(
                "call_sim", "get_realtime_data", {"metric": "stock", "symbol": "SIM"}
            )
            yield UsageReport(Usage(input_tokens=prompt, output_tokens=12))
            return
        for i, token in enumerate(REPLY_TOKENS):
            if self.p.llm_first_token_s or self.p.llm_per_token_s:
                await _until(start + self.p.llm_first_token_s + i * self.p.llm_per_token_s)
            yield TextDelta(token)
        yield UsageReport(Usage(input_tokens=prompt, output_tokens=len(REPLY_TOKENS)))


@cache
def _sine(samples: int, rate: int) -> bytes:
    """440 Hz at 0.3 full scale, like the anchor's mock; cached so a turn costs no synthesis."""
    return b"".join(
        int(0.3 * 32767 * math.sin(2 * math.pi * 440.0 * i / rate)).to_bytes(
            2, "little", signed=True
        )
        for i in range(samples)
    )


class SimulatedTTS:
    """``sample_rate``: 16 kHz like the anchor's W1; 24 kHz like OpenAI's and ElevenLabs' PCM,
    the OpenAI Realtime protocol's own rate (nothing to resample for ``/v1/realtime``)."""

    def __init__(self, p: Profile, sample_rate: int = SAMPLE_RATE) -> None:
        self.p = p
        self.name = f"simulated:{p.name}"
        self.sample_rate = sample_rate
        self._per_char = REPLY_AUDIO_S * sample_rate / len(REPLY_TEXT.replace(" ", ""))

    async def synthesize(self, text: str) -> AsyncIterator[TTSEvent]:
        if self.p.tts_first_byte_s:
            await asyncio.sleep(self.p.tts_first_byte_s)
        samples = round(len(text.replace(" ", "")) * self._per_char)
        yield _sine(samples, self.sample_rate)  # faster than real time: the whole sentence
        yield UsageReport(Usage(characters=len(text)))
