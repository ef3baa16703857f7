"""ElevenLabs: HTTP streaming text-to-speech and batch speech-to-text (Scribe).

This speaks the documented HTTP API with the same HTTP client and the same retry policy as
every network provider (``net.py``); the ElevenLabs SDK would add a second HTTP stack.
Speech is requested as raw PCM at ``sample_rate`` (``output_format=pcm_<rate>``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2

from voicewire.audio import resample_pcm16
from voicewire.providers.base import ProviderError, Transcript, TTSEvent, Usage, UsageReport
from voicewire.providers.cloud import net

DEFAULT_VOICE = "21m00Tcm4TlvDq8ikWAM"  # "Rachel", a premade voice every account has
SCRIBE_RATE = 16_000  # file_format=pcm_s16le_16: raw 16 kHz s16le mono, the fastest path


def client(base_url: str, api_key: str, policy: net.NetPolicy) -> httpx2.AsyncClient:
    return net.http_client(policy, base_url, {"xi-api-key": api_key})


async def _raise_for_status(response: httpx2.Response) -> None:
    if response.status_code >= 400:
        body = await response.aread()
        raise net.HTTPStatusFailure(response.status_code, response.headers, body)


class ElevenLabsTTS:
    def __init__(
        self,
        name: str,
        http: httpx2.AsyncClient,
        model: str,
        voice: str,
        sample_rate: int,
        policy: net.NetPolicy,
    ) -> None:
        self.name = name
        self.http = http
        self.model = model
        self.voice = voice
        self.sample_rate = sample_rate
        self.policy = policy

    async def synthesize(self, text: str) -> AsyncIterator[TTSEvent]:
        if not text.strip():
            return
        url = f"/v1/text-to-speech/{self.voice}/stream"
        params = {"output_format": f"pcm_{self.sample_rate}"}
        body = {"text": text, "model_id": self.model}

        async def audio() -> AsyncIterator[bytes]:
            async with self.http.stream("POST", url, params=params, json=body) as response:
                await _raise_for_status(response)
                async for chunk in response.aiter_bytes():
                    if chunk:
                        yield chunk

        async for pcm in net.stream(self.name, self.policy, audio):
            yield pcm
        yield UsageReport(Usage(characters=len(text)))


class ElevenLabsSTT:
    def __init__(
        self,
        name: str,
        http: httpx2.AsyncClient,
        model: str,
        policy: net.NetPolicy,
        language: str | None = None,
    ) -> None:
        self.name = name
        self.http = http
        self.model = model
        self.policy = policy
        self.language = language

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        audio = resample_pcm16(pcm, sample_rate, SCRIBE_RATE)
        data = {"model_id": self.model, "file_format": "pcm_s16le_16"}
        if self.language:
            data["language_code"] = self.language
        files = {"file": ("utterance.pcm", audio, "application/octet-stream")}

        async def attempt() -> dict:
            response = await self.http.post("/v1/speech-to-text", data=data, files=files)
            await _raise_for_status(response)
            return response.json()

        result = await net.call(self.name, self.policy, attempt)
        text = result.get("text") if isinstance(result, dict) else None
        if not isinstance(text, str):
            raise ProviderError(self.name, "malformed response: no 'text' in the transcription")
        seconds = result.get("audio_duration_secs") or len(pcm) / 2 / sample_rate
        return Transcript(text, Usage(audio_seconds=round(float(seconds), 3)))
