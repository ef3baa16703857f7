"""Scripted providers for tests: latency, failures, hangs and gates, with no model behind them.

Each records what it was asked and exposes ``threading.Event`` flags, so a test driving a server
in another thread can wait for "the LLM was cancelled" without sleeping.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from voicewire.providers.base import (
    LLMEvent,
    Message,
    ProviderError,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
    Transcript,
    TTSEvent,
    Usage,
    UsageReport,
)

_TOKEN = re.compile(r"\S+\s*")


async def _hang() -> None:
    await asyncio.Event().wait()


class FakeSTT:
    name = "fake:stt"

    def __init__(
        self,
        transcripts: list[str] | None = None,
        latency_s: float = 0.0,
        error: Exception | None = None,
        respond: Callable[[bytes], str] | None = None,
    ) -> None:
        self.transcripts = transcripts or ["hello"]
        self.respond = respond  # the transcript as a function of the audio, when set
        self.latency_s = latency_s
        self.error = error
        self.calls: list[bytes] = []

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        self.calls.append(pcm)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.error is not None:
            raise self.error
        if self.respond is not None:
            text = self.respond(pcm)
        else:
            text = self.transcripts[min(len(self.calls), len(self.transcripts)) - 1]
        return Transcript(text, Usage(audio_seconds=len(pcm) / 2 / sample_rate))


@dataclass
class FakeLLMStep:
    """One scripted LLM response: text streamed token by token, then tool calls."""

    text: str = ""
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    ttft_s: float = 0.0
    token_s: float = 0.0
    fail_after_tokens: int | None = None  # raise ProviderError after this many tokens
    hang_after_tokens: int | None = None  # never finish after this many tokens
    gate: asyncio.Event | None = None  # wait for it after ``gate_after_tokens`` tokens
    gate_after_tokens: int = 0


class FakeLLM:
    name = "fake:llm"

    def __init__(self, steps: list[FakeLLMStep] | None = None) -> None:
        self.steps = steps or [FakeLLMStep("Hello there. How can I help?")]
        self.calls: list[tuple[list[Message], list[ToolSpec]]] = []
        self.started = threading.Event()
        self.cancelled = threading.Event()

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[LLMEvent]:
        step = self.steps[min(len(self.calls), len(self.steps) - 1)]
        self.calls.append(([dict(m) for m in messages], list(tools)))
        self.started.set()
        try:
            if step.ttft_s:
                await asyncio.sleep(step.ttft_s)
            tokens = _TOKEN.findall(step.text)
            for i, token in enumerate(tokens):
                if step.gate is not None and i == step.gate_after_tokens:
                    await step.gate.wait()
                if i == step.fail_after_tokens:
                    raise ProviderError(self.name, "scripted failure")
                if i == step.hang_after_tokens:
                    await _hang()
                if i and step.token_s:
                    await asyncio.sleep(step.token_s)
                yield TextDelta(token)
            if step.fail_after_tokens is not None and step.fail_after_tokens >= len(tokens):
                raise ProviderError(self.name, "scripted failure")
            if step.hang_after_tokens is not None and step.hang_after_tokens >= len(tokens):
                await _hang()
            for call in step.tool_calls:
                yield call
            yield UsageReport(Usage(input_tokens=len(messages), output_tokens=len(tokens)))
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


class FakeTTS:
    """Makes ``ms_per_char`` of a quiet tone per character (about a voice's level: RMS 2000),
    in ``pieces`` parts."""

    name = "fake:tts"

    def __init__(
        self,
        sample_rate: int = 16_000,
        ms_per_char: float = 10.0,
        latency_s: float = 0.0,
        fail_on_call: int | None = None,
        pieces: int = 3,
    ) -> None:
        self.sample_rate = sample_rate
        self.ms_per_char = ms_per_char
        self.latency_s = latency_s
        self.fail_on_call = fail_on_call  # 1-based call number that raises
        self.pieces = pieces
        self.calls: list[str] = []

    async def synthesize(self, text: str) -> AsyncIterator[TTSEvent]:
        self.calls.append(text)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.fail_on_call == len(self.calls):
            raise ProviderError(self.name, "scripted failure")
        samples = int(len(text) * self.ms_per_char * self.sample_rate / 1000)
        t = np.arange(samples) * (2 * np.pi * 220 / self.sample_rate)
        pcm = (2800 * np.sin(t)).astype("<i2").tobytes()
        step = max(2, len(pcm) // self.pieces // 2 * 2)
        for i in range(0, len(pcm), step):
            yield pcm[i : i + step]
        yield UsageReport(Usage(characters=len(text)))
