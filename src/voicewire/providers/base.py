"""The three provider protocols a turn needs, and the small records they exchange.

Every implementation (embedded, cloud, simulated, fake) fits one of these. They are async so a
provider that waits on a network never holds the event loop; embedded models run their work in
the shared :class:`~voicewire.providers.runner.ModelRunner`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Chat messages use the OpenAI Chat Completions shape: it is what every LLM provider speaks.
Message = dict[str, Any]


@dataclass(slots=True)
class Usage:
    """What one provider call consumed; cost accounting prices it."""

    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    characters: int = 0
    audio_seconds: float = 0.0
    cpu_seconds: float = 0.0


@dataclass(slots=True)
class Fallback:
    """A provider failed before it streamed anything and the next one in its chain took over."""

    stage: str
    failed: str  # the provider that failed
    reason: str
    used: str  # the provider that takes over


@dataclass(slots=True)
class Transcript:
    text: str
    usage: Usage = field(default_factory=Usage)
    provider: str = ""  # who transcribed, when it is not the stage's own name (fallback)
    fallbacks: list[Fallback] = field(default_factory=list)


@dataclass(slots=True)
class TextDelta:
    """A piece of the assistant's reply text."""

    text: str


@dataclass(slots=True)
class ToolCallRequest:
    """The LLM asks for a tool; all requests of one LLM step run before the next step."""

    call_id: str
    name: str
    arguments: dict[str, Any]
    invalid_arguments: str | None = None  # what the LLM sent when it was not a JSON object


@dataclass(slots=True)
class UsageReport:
    """What one call used; ``provider`` names who served it when not the stage itself."""

    usage: Usage
    provider: str = ""


LLMEvent = TextDelta | ToolCallRequest | UsageReport | Fallback
TTSEvent = bytes | UsageReport | Fallback


@dataclass(slots=True)
class ToolSpec:
    """A tool as an LLM sees it: an OpenAI-style function schema."""

    name: str
    description: str
    parameters: dict[str, Any]

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


# ---------------------------------------------------------------------------- redaction
# Provider failure text travels far: the log, error frames, provider_fallback, /health (no
# auth). An upstream that quotes the request's key in its error body would leak it to all of
# them, so every reason is redacted and bounded where it leaves the provider layer.

MAX_REASON_CHARS = 300
_SECRETS: set[str] = set()
_TOKEN_LIKE = re.compile(
    r"(?i)(\bbearer\s+|\b(?:api[_-]?key|xi-api-key|token|secret)[\"']?\s*[:=]\s*[\"']?)"
    r"[^\s\"',;]+"
    r"|\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{8,}"
)


def register_secret(value: str | None) -> None:
    """A configured key: never shown in any reason."""
    if value and len(value) >= 6:
        _SECRETS.add(value)


def redact(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` without configured keys or anything shaped like a key, at most ``limit`` chars."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    text = _TOKEN_LIKE.sub(lambda m: (m.group(1) or "") + "[redacted]", text)
    text = " ".join(text.split())  # no multi-line bodies in a one-line log or frame
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class ProviderError(Exception):
    """A provider could not do its part; degrades one utterance, never the session."""

    def __init__(self, provider: str, message: str) -> None:
        message = redact(message)
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.reason = message


@runtime_checkable
class STT(Protocol):
    name: str

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        """Transcribe one utterance of PCM s16le mono audio."""
        ...


@runtime_checkable
class LLM(Protocol):
    name: str

    def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LLMEvent]:
        """Stream one completion step: text deltas and/or tool calls, then usage."""
        ...


@runtime_checkable
class TTS(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[TTSEvent]:
        """Stream PCM s16le mono audio at ``sample_rate`` for one sentence, then its usage."""
        ...


@dataclass(slots=True)
class Providers:
    """The three stages one server runs with."""

    stt: STT
    llm: LLM
    tts: TTS
    close: Callable[[], Awaitable[None]] | None = None  # releases network clients
    check: Callable[[], Awaitable[dict[str, str]]] | None = None  # endpoint -> "ok" or why

    def describe(self) -> dict[str, str]:
        return {"stt": self.stt.name, "llm": self.llm.name, "tts": self.tts.name}

    async def check_endpoints(self) -> dict[str, str]:
        return await self.check() if self.check is not None else {}

    async def aclose(self) -> None:
        if self.close is not None:
            await self.close()
