"""What a turn is given and what it hands back, apart from how it runs (``turn.py``): the
request, the reply options, the configuration, the emitter and tools it talks to, the usage it
reports. The conversation core, the adapters and the tests build these without the turn's
machinery.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from voicewire.protocol import ServerFrame, TtsChunk
from voicewire.providers.base import Message, ToolSpec, Transcript, Usage
from voicewire.session import UtteranceRecord
from voicewire.tools.registry import ToolError, ToolOutput


class Emitter(Protocol):
    """Where frames go: a wire adapter (``/ws/multimodal``, OpenAI Realtime) or the core."""

    async def send(self, frame: ServerFrame) -> None: ...
    async def send_audio(self, header: TtsChunk, pcm: bytes) -> None: ...


class TurnEmitter(Emitter, Protocol):
    """What a turn emits to (the conversation core): frames, and the reply's text deltas as
    plain strings, made into ``llm_streaming`` frames only if and when one is sent (a client
    may want none; close deltas share a frame)."""

    async def token(self, utterance_id: str, delta: str) -> None: ...


class Tools(Protocol):
    """What the turn needs of a tool registry (``voicewire.tools.ToolRegistry``)."""

    def specs(self) -> list[ToolSpec]: ...
    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutput: ...


class NoTools:
    def specs(self) -> list[ToolSpec]:
        return []

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutput:
        raise ToolError(f"unknown tool {name!r}: this server has no tools")


@dataclass(slots=True)
class Figure:
    call_id: str
    figure: dict[str, Any]


# What the speaker task receives: a sentence to say (or None: figures only) with the figures
# that belong to it; a bare None ends the reply.
Speech = tuple[str | None, list[Figure]]


@dataclass(slots=True)
class TurnConfig:
    tts_chunk_ms: int = 100  # the first audio chunk
    tts_max_chunk_ms: int = 400  # later chunks grow to this (turn.py: _chunk_bytes)
    max_tool_rounds: int = 3
    tool_timeout_s: float = 10.0
    max_reply_chars: int = 1500
    max_reply_audio_s: float = 120.0


@dataclass(frozen=True, slots=True)
class ReplyOptions:
    """How the client wants to be answered (OpenAI Realtime's session and response settings;
    ``/ws/multimodal`` uses the defaults)."""

    instructions: str = ""  # a system message before the history
    client_tools: tuple[ToolSpec, ...] = ()  # the client runs these: a call ends the reply
    tool_choice: str = "auto"  # "auto", "required" (offered, not enforced), "none", or a name
    speak: bool = True  # False: text only, no speech synthesis


@dataclass(slots=True)
class TurnRequest:
    """What the user said: text, or audio (PCM s16le 16 kHz) with an optional early transcript;
    neither: answer the history as it stands (a client's ``response.create``)."""

    record: UtteranceRecord
    input_end: float  # perf_counter() when the user's input ended: TTFA counts from here
    text: str | None = None
    audio: bytes | None = None
    speculative: Awaitable[Transcript] | None = None
    respond: bool = True  # False: the input only joins the history (transcribed if audio)
    add: list[Message] | None = None  # messages the client put in the conversation, as they are
    options: ReplyOptions = ReplyOptions()


@dataclass(slots=True)
class TurnUsage:
    """What the turn used, per stage and provider: with fallback, one stage may use two."""

    calls: dict[tuple[str, str], Usage] = field(default_factory=dict)
    tool_calls: int = 0

    def add(self, stage: str, provider: str, usage: Usage) -> None:
        total = self.calls.setdefault((stage, provider), Usage())
        for name in Usage.__slots__:  # type: ignore[attr-defined]
            setattr(total, name, getattr(total, name) + getattr(usage, name))
