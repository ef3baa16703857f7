"""The wire protocol of ``/ws/multimodal``: every frame as a typed model.

This module is the single definition that the server, the tests, the benchmark and the clients
share. ``docs/protocol.md`` documents each frame here (a test keeps them in step).

Client -> server: JSON text frames (``ClientFrame``) and binary frames of raw PCM s16le mono
16 kHz microphone audio. Server -> client: JSON text frames (subclasses of ``ServerFrame``) and
binary ``assistant_audio`` frames: ``[uint32 BE header length][TtsChunk JSON][PCM s16le]``.
"""

from __future__ import annotations

import json
import re
import struct
import time
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

# 1.1: barge-in (interrupt, playback, utterance_interrupted, reply_heard);
# 1.2: session_update.max_silence_ms (semantic end of turn);
# 1.3: tool_call_start.client, metrics_update.llm_tokens
PROTOCOL_VERSION = "1.6"
INPUT_SAMPLE_RATE = 16_000


class ErrorCode(StrEnum):
    """Stable error codes; clients may branch on them, so never rename one."""

    INVALID_JSON = "invalid_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FRAME = "invalid_frame"
    TEXT_TOO_LONG = "text_too_long"
    FRAME_TOO_LARGE = "frame_too_large"
    BAD_AUDIO = "bad_audio"
    AUDIO_TOO_LONG = "audio_too_long"
    NO_AUDIO = "no_audio"
    UNKNOWN_UTTERANCE = "unknown_utterance"
    BUSY = "busy"
    NO_SPEECH = "no_speech"
    STT_FAILED = "stt_failed"
    LLM_FAILED = "llm_failed"
    TTS_FAILED = "tts_failed"
    REPLY_TRUNCATED = "reply_truncated"
    IDLE_TIMEOUT = "idle_timeout"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"


# --------------------------------------------------------------------------- client -> server

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Replace lone UTF-16 surrogates (``"\\ud800"`` is valid JSON but not encodable) with
    U+FFFD, so text taken from a client or a provider can always be stored and sent."""
    return text if text.isascii() else _LONE_SURROGATE.sub("\ufffd", text)


CleanStr = Annotated[str, AfterValidator(clean_text)]


class _ClientFrame(BaseModel):
    # strict: "300" is not a number and true is not 300; a client bug should be seen, not
    # guessed around
    model_config = ConfigDict(extra="ignore", strict=True)
    ref: CleanStr | None = Field(default=None, max_length=128, description="Echoed in ack/error.")


class UserText(_ClientFrame):
    """A typed message from the user; starts an utterance."""

    type: Literal["user_text"]
    text: CleanStr


class UserAudio(_ClientFrame):
    """A one-shot audio clip (base64); starts an utterance."""

    type: Literal["user_audio"]
    audio: str
    format: Literal["wav", "pcm_s16le"] = "wav"
    sample_rate: int = Field(default=INPUT_SAMPLE_RATE, ge=8_000, le=192_000)


class AudioCommit(_ClientFrame):
    """End of a streamed utterance (push-to-talk release)."""

    type: Literal["audio_commit"]


class SessionUpdate(_ClientFrame):
    """Change how this session takes turns."""

    type: Literal["session_update"]
    turn_detection: Literal["server_vad", "manual"] | None = None
    silence_ms: int | None = Field(default=None, ge=100, le=5000)
    # silence that ends a turn whose words sound unfinished; <= silence_ms: fixed silence
    max_silence_ms: int | None = Field(default=None, ge=0, le=10000)
    barge_in: bool | None = None  # false: speech during a reply waits its turn instead
    reports_playback: bool | None = None  # true: this client plays audio and sends `playback`
    # false: no llm_streaming frames (the client shows no tokens: a phone gateway, a load
    # client); llm_complete and assistant_text still carry the words
    token_frames: bool | None = None


class Cancel(_ClientFrame):
    """Stop an utterance now: queued or running, every task of it."""

    type: Literal["cancel"]
    utterance_id: CleanStr = Field(max_length=64)


class Interrupt(_ClientFrame):
    """The user takes the floor (push-to-talk pressed, the client's own VAD): stop the reply."""

    type: Literal["interrupt"]


class Playback(_ClientFrame):
    """How much of a reply the client has played: after it stopped one, and when one ends.

    The agent remembers only what was heard (OpenAI's ``conversation.item.truncate``)."""

    type: Literal["playback"]
    utterance_id: CleanStr = Field(max_length=64)
    played_ms: float = Field(ge=0, le=86_400_000)
    done: bool = False  # the reply played to its end (played_ms is then its length)


class Ping(_ClientFrame):
    type: Literal["ping"]


ClientFrame = Annotated[
    UserText | UserAudio | AudioCommit | SessionUpdate | Cancel | Interrupt | Playback | Ping,
    Field(discriminator="type"),
]
CLIENT_FRAME_TYPES: tuple[str, ...] = (
    "user_text",
    "user_audio",
    "audio_commit",
    "session_update",
    "cancel",
    "interrupt",
    "playback",
    "ping",
)
client_frame_adapter: TypeAdapter[Any] = TypeAdapter(ClientFrame)


# --------------------------------------------------------------------------- server -> client


class ServerFrame(BaseModel):
    """Envelope shared by every server frame. The sender fills ``session_id``, ``seq``, ``ts``."""

    type: str
    session_id: str = ""
    utterance_id: str | None = None
    seq: int = 0
    ts: int = 0

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class AudioFormat(BaseModel):
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    channels: int = 1
    sample_rate: int


class Limits(BaseModel):
    max_text_chars: int
    max_frame_bytes: int
    max_audio_s: float
    max_queued_utterances: int
    max_reply_chars: int
    max_reply_audio_s: float


class BargeIn(BaseModel):
    """How this session may be interrupted, and how far the server sends ahead of playout."""

    enabled: bool
    min_speech_ms: int  # speech held this long during a reply interrupts it
    audio_lead_ms: int | None = None  # reply audio is sent at most this far ahead (None: unpaced)


class Init(ServerFrame):
    type: Literal["init"] = "init"
    protocol_version: str = PROTOCOL_VERSION
    server_version: str
    input_audio: AudioFormat
    output_audio: AudioFormat
    providers: dict[str, str]
    turn_detection: str
    silence_ms: int
    limits: Limits
    barge_in: BargeIn | None = None  # absent: a server before protocol 1.1
    # 1.5: keep it to resume this session after a lost connection, on any worker
    # (``?session_id=...&resume_token=...``); ``resumed``: this connection continues one
    resume_token: str | None = None
    resumed: bool = False


class Ack(ServerFrame):
    """Confirms a client request; ``utterance_id`` is set when the request started one."""

    type: Literal["ack"] = "ack"
    request: str
    ref: str | None = None


class Error(ServerFrame):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    stage: str | None = None
    ref: str | None = None


class Pong(ServerFrame):
    type: Literal["pong"] = "pong"
    ref: str | None = None


class SpeechStarted(ServerFrame):
    """Server VAD heard speech begin; ``offset_ms`` is its position in the input stream."""

    type: Literal["speech_started"] = "speech_started"
    offset_ms: int


class SpeechStopped(ServerFrame):
    """Server VAD decided the user's turn ended; the utterance follows."""

    type: Literal["speech_stopped"] = "speech_stopped"
    offset_ms: int


class SttStart(ServerFrame):
    type: Literal["stt_start"] = "stt_start"
    audio_ms: int


class SttComplete(ServerFrame):
    type: Literal["stt_complete"] = "stt_complete"
    text: str
    duration_ms: float


class LlmStart(ServerFrame):
    type: Literal["llm_start"] = "llm_start"


class LlmStreaming(ServerFrame):
    type: Literal["llm_streaming"] = "llm_streaming"
    delta: str


class LlmComplete(ServerFrame):
    type: Literal["llm_complete"] = "llm_complete"
    text: str


class ToolCallStart(ServerFrame):
    type: Literal["tool_call_start"] = "tool_call_start"
    call_id: str
    name: str
    arguments: dict[str, Any]
    client: bool | None = None  # true: a tool the client declared and runs; the reply ends here


class ToolCallComplete(ServerFrame):
    type: Literal["tool_call_complete"] = "tool_call_complete"
    call_id: str
    name: str
    result: Any = None
    error: str | None = None
    duration_ms: float


class VizStart(ServerFrame):
    """A tool made a figure; ``visualization_data`` follows when its sentence is spoken."""

    type: Literal["viz_start"] = "viz_start"


class VisualizationData(ServerFrame):
    """A Plotly figure (plotly.js JSON), placed at the start of the sentence that talks about it."""

    type: Literal["visualization_data"] = "visualization_data"
    call_id: str
    figure: dict[str, Any]
    offset_ms: float | None = None


class VizComplete(ServerFrame):
    type: Literal["viz_complete"] = "viz_complete"
    count: int


class TtsStart(ServerFrame):
    type: Literal["tts_start"] = "tts_start"
    sample_rate: int


class TtsChunk(ServerFrame):
    """Header of a binary ``assistant_audio`` frame: where its PCM sits on the reply timeline."""

    type: Literal["tts_chunk"] = "tts_chunk"
    chunk_index: int
    offset_ms: float
    samples: int
    sample_rate: int


class TtsComplete(ServerFrame):
    type: Literal["tts_complete"] = "tts_complete"
    audio_ms: float


class AssistantText(ServerFrame):
    """One sentence of the reply, placed where its audio starts (null offset: text-only)."""

    type: Literal["assistant_text"] = "assistant_text"
    text: str
    offset_ms: float | None = None


class StageTimings(BaseModel):
    """Per-stage timings of one utterance in ms; absent when the stage did not run."""

    stt_ms: float | None = None
    llm_ttft_ms: float | None = None
    llm_ms: float | None = None
    tools_ms: float | None = None
    tts_ttfb_ms: float | None = None
    ttfa_ms: float | None = None
    total_ms: float | None = None

    STAGES: ClassVar[tuple[str, ...]] = (
        "stt_ms",
        "llm_ttft_ms",
        "llm_ms",
        "tools_ms",
        "tts_ttfb_ms",
        "ttfa_ms",
        "total_ms",
    )


class TokenCounts(BaseModel):
    """LLM tokens one utterance used, over every step and provider."""

    input: int = 0
    cached: int = 0  # of ``input``, served from the provider's prompt cache
    output: int = 0


class RateLimit(BaseModel):
    name: Literal["turns_per_min", "audio_s_per_day", "sessions"]
    limit: float
    remaining: float
    reset_seconds: float


class RateLimits(ServerFrame):
    """Where the API key stands against its limits: after the first turn, then now and then."""

    type: Literal["rate_limits"] = "rate_limits"
    limits: list[RateLimit]


class SessionClosing(ServerFrame):
    """The server is about to close the session (it is shutting down): reconnect elsewhere."""

    type: Literal["session_closing"] = "session_closing"
    reason: Literal["server_shutdown"] = "server_shutdown"
    message: str = ""


class MetricsUpdate(ServerFrame):
    type: Literal["metrics_update"] = "metrics_update"
    timings: StageTimings
    llm_tokens: TokenCounts | None = None  # absent: the LLM did not run


class CostUpdate(ServerFrame):
    """What this utterance cost, and the session so far. USD amounts are exact decimal strings."""

    type: Literal["cost_update"] = "cost_update"
    utterance: dict[str, str]
    session_total_usd: str
    session_minutes: float
    usd_per_minute: str


class ProviderFallback(ServerFrame):
    """A provider failed before it streamed anything; the next in its chain took over.

    Not an error: the utterance goes on. Clients may show it; operators watch for it.
    """

    type: Literal["provider_fallback"] = "provider_fallback"
    stage: Literal["stt", "llm", "tts"]
    failed: str
    reason: str
    used: str


class UtteranceCancelled(ServerFrame):
    type: Literal["utterance_cancelled"] = "utterance_cancelled"


class UtteranceInterrupted(ServerFrame):
    """The user talked over this reply: it stopped at once; no more of its frames follow but
    its last ones (``metrics_update``, ``cost_update``, ``utterance_complete``)."""

    type: Literal["utterance_interrupted"] = "utterance_interrupted"
    reason: Literal["speech", "client"]
    sent_ms: float  # reply audio sent before it stopped: the most the client can have played


class ReplyHeard(ServerFrame):
    """What the agent now remembers of a reply that was not heard to its end."""

    type: Literal["reply_heard"] = "reply_heard"
    played_ms: float
    text: str


class UtteranceComplete(ServerFrame):
    """Always the last frame of an utterance."""

    type: Literal["utterance_complete"] = "utterance_complete"
    status: Literal["completed", "failed", "cancelled", "interrupted", "empty", "ignored"]
    timings: StageTimings


SERVER_FRAME_CLASSES: tuple[type[ServerFrame], ...] = (
    Init,
    SessionClosing,
    RateLimits,
    Ack,
    Error,
    Pong,
    SpeechStarted,
    SpeechStopped,
    SttStart,
    SttComplete,
    LlmStart,
    LlmStreaming,
    LlmComplete,
    ToolCallStart,
    ToolCallComplete,
    VizStart,
    VisualizationData,
    VizComplete,
    TtsStart,
    TtsChunk,
    TtsComplete,
    AssistantText,
    MetricsUpdate,
    CostUpdate,
    ProviderFallback,
    UtteranceCancelled,
    UtteranceInterrupted,
    ReplyHeard,
    UtteranceComplete,
)
SERVER_FRAME_TYPES: dict[str, type[ServerFrame]] = {
    cls.model_fields["type"].default: cls for cls in SERVER_FRAME_CLASSES
}


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- binary audio

_HEADER_LEN = struct.Struct(">I")


def encode_audio_frame(header: TtsChunk, pcm: bytes) -> bytes:
    """Pack ``[uint32 BE header length][header JSON][PCM s16le]``."""
    head = header.to_json().encode()
    return _HEADER_LEN.pack(len(head)) + head + pcm


def decode_audio_frame(data: bytes) -> tuple[TtsChunk, bytes]:
    """Inverse of :func:`encode_audio_frame`; raises ``ValueError`` on a malformed frame."""
    if len(data) < _HEADER_LEN.size:
        raise ValueError("audio frame shorter than its length prefix")
    (n,) = _HEADER_LEN.unpack_from(data)
    end = _HEADER_LEN.size + n
    if end > len(data):
        raise ValueError("audio frame header length exceeds the frame")
    header = TtsChunk.model_validate_json(data[_HEADER_LEN.size : end])
    return header, data[end:]


def parse_server_frame(text: str | bytes) -> ServerFrame:
    """Parse a JSON server frame into its typed model (clients and tests use this)."""
    raw = json.loads(text)
    cls = SERVER_FRAME_TYPES.get(raw.get("type"))
    if cls is None:
        raise ValueError(f"unknown server frame type {raw.get('type')!r}")
    return cls.model_validate(raw)
