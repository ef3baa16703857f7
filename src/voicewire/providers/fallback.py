"""Fallback chains: when a stage's provider fails, the next one in its chain answers.

A chain moves on only while the failing provider has streamed nothing to the user (after that,
switching would repeat or contradict what was already said). Each member has a
:class:`Breaker`: after ``failures`` consecutive failures it is skipped for ``cooldown_s``, so a
dead provider does not cost every utterance its timeouts; then one call probes it again. The
last member is never skipped: a chain always tries something.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from voicewire.providers.base import (
    LLM,
    STT,
    TTS,
    Fallback,
    LLMEvent,
    Message,
    ProviderError,
    ToolSpec,
    Transcript,
    TTSEvent,
    UsageReport,
    redact,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Breaker:
    """Consecutive-failure circuit breaker; pure logic, the time is passed in."""

    failures: int = 3
    cooldown_s: float = 30.0
    _streak: int = 0
    _open_until: float = 0.0

    def allows(self, now: float) -> bool:
        return now >= self._open_until

    def record(self, ok: bool, now: float) -> None:
        if ok:
            self._streak, self._open_until = 0, 0.0
            return
        self._streak += 1
        if self._streak >= self.failures:
            self._open_until = now + self.cooldown_s
            self._streak = self.failures - 1  # one more failure after the cooldown reopens it

    @property
    def is_open(self) -> bool:
        return self._open_until > 0.0

    def remaining_s(self, now: float) -> float:
        return max(0.0, self._open_until - now)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ProviderError):
        return exc.reason
    return redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


class _Chain:
    """The members of one stage's chain with their breakers."""

    def __init__(
        self,
        stage: str,
        members: Sequence[Any],
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(members) < 2:
            raise ValueError("a fallback chain needs at least two providers")
        self.stage = stage
        self.members = list(members)
        self.breakers = [Breaker(failures, cooldown_s) for _ in members]
        self.clock = clock
        self.name = ",".join(m.name for m in members)

    def candidates(self) -> tuple[list[tuple[Any, Breaker]], list[Fallback]]:
        """Members to try, in order, and a notice for each one its open breaker skips."""
        now = self.clock()
        pairs = list(zip(self.members, self.breakers, strict=True))
        ready = [(m, b) for m, b in pairs[:-1] if b.allows(now)] + [pairs[-1]]
        skipped = [
            Fallback(
                self.stage,
                m.name,
                f"skipped after {b.failures} consecutive failures; "
                f"tried again in {b.remaining_s(now):.0f} s",
                ready[0][0].name,
            )
            for m, b in pairs[:-1]
            if not b.allows(now)
        ]
        return ready, skipped

    def failed(self, breaker: Breaker, member: Any, exc: BaseException, nxt: Any) -> Fallback:
        breaker.record(False, self.clock())
        reason = _reason(exc)
        log.warning("%s %s failed (%s); falling back to %s", self.stage, member.name, reason,
                    nxt.name)  # fmt: skip
        return Fallback(self.stage, member.name, reason, nxt.name)

    def succeeded(self, breaker: Breaker) -> None:
        breaker.record(True, self.clock())


class FallbackSTT:
    def __init__(self, members: Sequence[STT], failures: int = 3, cooldown_s: float = 30.0) -> None:
        self.chain: _Chain = _Chain("stt", members, failures, cooldown_s)
        self.name = self.chain.name

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        candidates, fallbacks = self.chain.candidates()
        for i, (member, breaker) in enumerate(candidates):
            try:
                transcript = await member.transcribe(pcm, sample_rate)
            except Exception as exc:
                if i == len(candidates) - 1:
                    breaker.record(False, self.chain.clock())
                    raise
                fallbacks.append(self.chain.failed(breaker, member, exc, candidates[i + 1][0]))
                continue
            self.chain.succeeded(breaker)
            transcript.provider = transcript.provider or member.name
            transcript.fallbacks = fallbacks + transcript.fallbacks
            return transcript
        raise AssertionError("unreachable: the last candidate returns or raises")


async def _first_then_rest(
    chain: _Chain,
    open_stream: Callable[[Any], AsyncIterator[Any]],
    stamp: Callable[[Any, str], Any],
) -> AsyncIterator[Any]:
    """Try each candidate until one yields something; then stream the rest of it."""
    candidates, skipped = chain.candidates()
    for notice in skipped:
        yield notice
    for i, (member, breaker) in enumerate(candidates):
        it = open_stream(member)
        try:
            first = await anext(it, None)
        except Exception as exc:
            if i == len(candidates) - 1:
                breaker.record(False, chain.clock())
                raise
            yield chain.failed(breaker, member, exc, candidates[i + 1][0])
            continue
        chain.succeeded(breaker)
        try:
            if first is None:
                return
            yield stamp(first, member.name)
            async for event in it:  # a failure from here on is the utterance's, not the chain's
                yield stamp(event, member.name)
        finally:
            await it.aclose()  # type: ignore[attr-defined]
        return


def _stamp(event: Any, provider: str) -> Any:
    if isinstance(event, UsageReport) and not event.provider:
        event.provider = provider
    return event


class FallbackLLM:
    def __init__(self, members: Sequence[LLM], failures: int = 3, cooldown_s: float = 30.0) -> None:
        self.chain: _Chain = _Chain("llm", members, failures, cooldown_s)
        self.name = self.chain.name

    def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LLMEvent]:
        return _first_then_rest(self.chain, lambda m: m.stream(messages, tools), _stamp)


class FallbackTTS:
    """Speaks at the first member's rate; the others are resampled to it."""

    def __init__(self, members: Sequence[TTS], failures: int = 3, cooldown_s: float = 30.0) -> None:
        rate = members[0].sample_rate
        members = [m if m.sample_rate == rate else ResampledTTS(m, rate) for m in members]
        self.chain: _Chain = _Chain("tts", members, failures, cooldown_s)
        self.name = self.chain.name
        self.sample_rate = rate

    def synthesize(self, text: str) -> AsyncIterator[TTSEvent]:
        return _first_then_rest(self.chain, lambda m: m.synthesize(text), _stamp)


class ResampledTTS:
    """A TTS whose audio is resampled, streaming, to another rate (soxr, no clicks between
    chunks: one resampler per sentence keeps its filter state across chunks)."""

    def __init__(self, inner: TTS, sample_rate: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.sample_rate = sample_rate

    async def synthesize(self, text: str) -> AsyncIterator[TTSEvent]:
        stream = soxr.ResampleStream(self.inner.sample_rate, self.sample_rate, 1, dtype="int16")
        odd = b""  # network chunks may split a sample
        async for event in self.inner.synthesize(text):
            if not isinstance(event, bytes):
                yield event
                continue
            data = odd + event
            cut = len(data) - len(data) % 2
            data, odd = data[:cut], data[cut:]
            out = stream.resample_chunk(np.frombuffer(data, dtype=np.int16))
            if len(out):
                yield out.tobytes()
        tail = stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        if len(tail):
            yield tail.tobytes()
