"""OpenAI (or OpenAI-compatible) speech: ``/v1/audio/transcriptions`` and ``/v1/audio/speech``.

Speech is asked for as raw ``pcm`` (24 kHz s16le mono) and streamed: the first bytes are
played while the rest of the sentence is still being generated. Bytes are passed on as the
network delivers them; the turn cuts them into its own audio frames.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from openai import AsyncOpenAI

from voicewire.audio import encode_wav
from voicewire.providers.base import Transcript, TTSEvent, Usage, UsageReport
from voicewire.providers.cloud import net

OPENAI_PCM_RATE = 24_000  # fixed by the API for response_format=pcm


class OpenAISTT:
    def __init__(
        self,
        name: str,
        client: AsyncOpenAI,
        model: str,
        policy: net.NetPolicy,
        language: str | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.model = model
        self.policy = policy
        self.language = language

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        wav = encode_wav(pcm, sample_rate)
        extra = {"language": self.language} if self.language else {}

        async def attempt() -> str:
            result = await self.client.audio.transcriptions.create(
                model=self.model, file=("utterance.wav", wav, "audio/wav"), **extra
            )
            return result if isinstance(result, str) else result.text

        text = await net.call(self.name, self.policy, attempt)
        # Billed per audio second (whisper-1) or estimated so (gpt-4o-*-transcribe).
        return Transcript(text, Usage(audio_seconds=round(len(pcm) / 2 / sample_rate, 3)))


class OpenAITTS:
    sample_rate = OPENAI_PCM_RATE

    def __init__(
        self,
        name: str,
        client: AsyncOpenAI,
        model: str,
        voice: str,
        policy: net.NetPolicy,
    ) -> None:
        self.name = name
        self.client = client
        self.model = model
        self.voice = voice
        self.policy = policy

    async def synthesize(self, text: str) -> AsyncIterator[TTSEvent]:
        if not text.strip():
            return

        async def audio() -> AsyncIterator[bytes]:
            async with self.client.audio.speech.with_streaming_response.create(
                model=self.model, voice=self.voice, input=text, response_format="pcm"
            ) as response:
                async for chunk in response.iter_bytes():  # as it arrives: no re-chunking
                    if chunk:
                        yield chunk

        async for pcm in net.stream(self.name, self.policy, audio):
            yield pcm
        yield UsageReport(Usage(characters=len(text)))
