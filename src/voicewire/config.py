"""Server settings: environment (``VOICEWIRE_*``) over an optional TOML file over defaults.

One flat model keeps every knob greppable and printable (``voicewire config``). A TOML file is
read from ``VOICEWIRE_CONFIG`` or ``./voicewire.toml`` when present.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

TurnDetection = Literal["server_vad", "manual"]


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad setting, named as the user sets it: "VOICEWIRE_PORT=99999: ..."."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        name = f"VOICEWIRE_{field.upper()}" if err["loc"] else field
        value = err.get("input")
        shown = f"={value}" if isinstance(value, str | int | float) and err["loc"] else ""
        lines.append(f"{name}{shown}: {err['msg']}")
    return "; ".join(lines)


def _toml_path() -> Path | None:
    explicit = os.environ.get("VOICEWIRE_CONFIG")
    if explicit:
        return Path(explicit)
    default = Path("voicewire.toml")
    return default if default.is_file() else None


class Settings(BaseSettings):
    """Everything the server can be told; defaults serve the embedded offline models."""

    model_config = SettingsConfigDict(
        env_prefix="VOICEWIRE_", extra="ignore", populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Browser origins, besides the server's own, allowed to open the WebSocket (comma-separated,
    # e.g. "https://app.example.com"; "*" allows any). Without this check any web page the user
    # visits could drive the server, and spend its cloud credits, from their browser.
    allowed_origins: str = ""
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, with the ids
    # Access (docs/deploy.md). API keys: comma-separated "key" or "name:key", or "@path" to a
    # file of them, one per line (re-read when it changes). Unset: no key needed (loopback use).
    api_keys: SecretStr | None = None
    # Signs client tokens (POST /v1/client_tokens); unset: a random one per process. Set it
    # when several workers must accept each other's tokens.
    token_secret: SecretStr | None = None
    token_ttl_s: float = Field(default=60.0, gt=0, le=3600)  # a token's time to connect
    # Limits for every key, e.g. "sessions=5,turns_per_min=30,audio_s_per_day=3600"; a key's
    # line in the keys file may set its own ("alice:KEY turns_per_min=60").
    key_limits: str = ""

    # Providers, as "kind" or "kind:model"; a comma-separated list is a fallback chain, tried
    # in order (e.g. "openai:gpt-4o-mini,local"). The embedded defaults need no key and no
    # network. Every kind, model and setting: docs/providers.md.
    stt: str = "local"
    llm: str = "local"
    tts: str = "local"
    # local:<model> GGUFs are offered the tools too (a larger model may choose them well); off:
    # the rules make every call and the model only talks
    llm_model_tools: bool = False
    # A simulated-provider profile (zero, realistic, seed): every stage left at "local" becomes
    # "simulated:<profile>". For load tests and capacity planning without models.
    profile: str | None = None
    sim_tool_call: bool = False  # the simulated LLM calls one (simulated-data) tool first
    sim_tts_rate: int = Field(default=16_000, ge=8_000, le=48_000)  # the simulated TTS's audio

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        if self.profile:
            for stage in ("stt", "llm", "tts"):
                if getattr(self, stage) == "local":
                    setattr(self, stage, f"simulated:{self.profile}")
        if self.speculative_stt_ms is None:  # free for embedded STT; paid twice in the cloud
            first = self.stt.split(",")[0].partition(":")[0].strip()
            self.speculative_stt_ms = 120 if first in ("local", "simulated") else 0
        return self

    # Cloud and self-hosted providers. Keys come from the providers' usual environment
    # variables (or VOICEWIRE_-prefixed ones); they are secrets and never printed.
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("VOICEWIRE_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str = Field(
        default="https://api.openai.com/v1",
        validation_alias=AliasChoices("VOICEWIRE_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
    )
    elevenlabs_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("VOICEWIRE_ELEVENLABS_API_KEY", "ELEVENLABS_API_KEY"),
    )
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    # An OpenAI-compatible server (Ollama, vLLM, llama.cpp server, speaches...) for the
    # "openai-compatible" kind, e.g. http://localhost:11434/v1; most need no key.
    compat_base_url: str | None = None
    compat_api_key: SecretStr | None = None
    # What cloud LLMs are told; the embedded agent has its own rules.
    system_prompt: str = (
        "You are a helpful voice assistant. Your replies are spoken aloud: answer in one to "
        "three short sentences of plain speech, with no lists, markdown, emoji or URLs. Use "
        "the tools when they help: charts for data the user wants to see, sentiment analysis, "
        "live system figures."
    )
    llm_max_tokens: int | None = Field(default=None, ge=1)
    # Sent as reasoning_effort to OpenAI reasoning models (gpt-5*, gpt-6*, o*): lower is faster
    # to first token. Unset: "none" for gpt-6 models (their tool calls need it), else not sent.
    llm_reasoning_effort: (
        Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None
    ) = None
    stt_language: str | None = "en"  # a hint for cloud STT; None lets it detect
    tts_voice: str | None = None  # None: the provider's default (docs/providers.md)
    # Rate requested from cloud TTS that offer a choice (ElevenLabs); OpenAI's PCM is 24 kHz.
    tts_sample_rate: Literal[16000, 22050, 24000, 44100] = 24000
    # Resample all reply audio to this rate (e.g. 8000 for telephony); None: the TTS's own.
    output_sample_rate: int | None = Field(default=None, ge=8000, le=48000)
    # Failure handling for network providers: connect and read timeouts (a read timeout is
    # the longest wait for the first or the next byte), retries with exponential backoff and
    # jitter on 429/5xx/timeouts before anything streamed (a Retry-After longer than
    # provider_retry_max_wait_s is not waited for: the chain falls back instead), and a
    # breaker that skips a provider for a while after consecutive failures.
    provider_connect_timeout_s: float = Field(default=3.0, gt=0, le=120)
    stt_timeout_s: float = Field(default=10.0, gt=0, le=600)
    llm_timeout_s: float = Field(default=10.0, gt=0, le=600)
    tts_timeout_s: float = Field(default=10.0, gt=0, le=600)
    provider_retries: int = Field(default=2, ge=0, le=10)
    provider_retry_max_wait_s: float = Field(default=2.0, ge=0, le=120)
    breaker_failures: int = Field(default=3, ge=1, le=1000)
    breaker_cooldown_s: float = Field(default=30.0, ge=0)

    # Model work runs in a thread pool of this many workers, shared by every session.
    model_workers: int = Field(default=2, ge=1, le=64)
    # Threads each embedded model may use inside one call (CTranslate2 / onnxruntime).
    model_threads: int = Field(default=2, ge=1, le=64)
    warmup: bool = True
    # Whisper's encoder window: 10 s is ~3x faster than 30 s and, with the vocabulary below,
    # as accurate on our spoken set (docs/performance.md, "Hearing").
    stt_window_s: float = Field(default=10.0, ge=10.0, le=30.0)
    # Words speech-to-text should expect (Whisper's prompt, OpenAI's `prompt`). Unset: the
    # tools' vocabulary ("bar chart", "CPU usage", ...); empty: none.
    stt_vocabulary: str | None = Field(default=None, max_length=800)
    # Whisper's beam: 5 hears a few more of the tool words than 1 (greedy), for ~50-100 ms
    # more. Speculative transcriptions (started at a pause, before the turn ends) have that
    # time to spare; a committed turn's transcription does not.
    stt_beam_size: int = Field(default=1, ge=1, le=8)
    stt_speculative_beam_size: int = Field(default=5, ge=1, le=8)

    # Turn taking.
    turn_detection: TurnDetection = "server_vad"
    # 400: people leave 300-380 ms between two sentences of one turn ("Okay, that's all for
    # now. Bye!"); with 300 a fifth of such turns split. Costs ~75 ms of time to first audio in
    # real time, less than that in practice: the transcript is rarely ready sooner
    # (docs/performance.md, "Hearing").
    silence_ms: int = Field(default=400, ge=100, le=5000)
    # ... unless what was said sounds unfinished ("a bar chart of sales:", "... and"): then up
    # to this much silence (pipeline/turn_end.py). At or below silence_ms: a fixed silence.
    # Needs speculative STT (on by default for embedded STT).
    max_silence_ms: int = Field(default=1200, ge=0, le=10000)
    # The speech detector: Silero (a small network, in noise it keeps hearing the quiet
    # consonants webrtcvad loses: pipeline/silero.py) or webrtcvad (cheaper, ~10x less CPU).
    vad: Literal["silero", "webrtc"] = "silero"
    vad_aggressiveness: int = Field(default=2, ge=0, le=3)  # webrtcvad's
    # Consecutive speech that starts a turn; the pre-roll keeps the onset, so this adds no
    # latency, and it ignores the few frames webrtcvad flags whenever the noise floor changes.
    vad_min_speech_ms: int = Field(default=120, ge=20, le=2000)
    # Frames quieter than this RMS (int16 units; 150 is about -47 dBFS) are never speech.
    vad_energy_floor: float = Field(default=150.0, ge=0)
    # ... and frames less than this many times (RMS) above the room's own noise, measured as
    # the quietest frame of the last second (1.5 = 3.5 dB; 0 or 1: off). Steady noise (a fan,
    # a road) otherwise passes webrtcvad often enough to hold a turn open.
    vad_noise_ratio: float = Field(default=1.5, ge=0, le=30)
    # Start transcribing speculatively after this much silence; the result is used if the
    # user does not speak again before the turn ends. Default: 120 for embedded STT, 0 (off)
    # for network STT, where every speculative call is billed.
    speculative_stt_ms: int | None = Field(default=None, ge=0, le=5000)
    # A client that stops sending audio mid-turn (a muted microphone, a push-to-talk button let
    # go without audio_commit) would hold the turn open for ever: after this long without
    # audio, the missing audio is heard as silence and the turn ends. Longer than the gaps of
    # a congested network, which deliver the audio late, not never. 0: off.
    mic_stall_ms: int = Field(default=2000, ge=0, le=60000)

    # Tools: calls of one LLM step run concurrently, each bounded by this timeout.
    tool_timeout_s: float = Field(default=10.0, gt=0, le=600)
    max_tool_rounds: int = Field(default=3, ge=0, le=20)

    # A reply's first audio chunk lasts tts_chunk_ms; later ones as long as the audio sent
    # before them, up to tts_max_chunk_ms (fewer frames; the first audio is not delayed).
    tts_chunk_ms: int = Field(default=100, ge=10, le=2000)
    tts_max_chunk_ms: int = Field(default=400, ge=10, le=5000)

    # Barge-in: user speech held this long while a reply is made or plays interrupts it
    # (shorter: a cough, a door, "mm-hm" — ignored). While the agent's audio plays the VAD
    # ignores frames quieter than echo_energy_floor (RMS) or echo_level_ratio times the
    # agent's own level at that moment, so what the browser's echo canceller leaves of the
    # agent's voice does not interrupt it.
    barge_in: bool = True
    interrupt_min_speech_ms: int = Field(default=200, ge=20, le=5000)
    echo_energy_floor: float = Field(default=600.0, ge=0)
    echo_level_ratio: float = Field(default=0.15, ge=0, le=10)  # or this share of its own level
    # Reply audio is sent at most this far ahead of the client's playout (0: as fast as it is
    # made), so an interruption wastes little synthesis and the client has little to flush.
    audio_lead_ms: int = Field(default=1500, ge=0, le=600_000)
    # LLM token deltas this close together go out in one frame (the first at once); 0: one
    # frame per delta. Fewer frames, less CPU per turn (docs/performance.md).
    token_window_ms: int = Field(default=30, ge=0, le=1000)

    # Sessions.
    history_turns: int = Field(default=10, ge=0, le=1000)
    idle_timeout_s: float = Field(default=300.0, gt=0)
    session_ttl_s: float = Field(default=600.0, ge=0)
    max_queued_utterances: int = Field(default=8, ge=1, le=1000)
    # OpenTelemetry traces of every utterance (tracing.py), sent where OTEL_EXPORTER_OTLP_*
    # say (default http://localhost:4318).
    otel: bool = False
    # Server processes sharing the port (voicewire serve --workers N).
    workers: int = Field(default=1, ge=1, le=256)
    # Several workers (docs/deploy.md): sessions kept in Redis, so a client resumes on any
    # worker (they expire session_ttl_s after their last write); per-key limits shared.
    redis_url: SecretStr | None = None

    # Cost accounting: the ledger lives in data_dir; prices_file overrides or extends the
    # shipped price table.
    data_dir: Path = Path("data")
    ledger: bool = True
    # The ledger in PostgreSQL (postgresql://user:pass@host/db) instead of SQLite in data_dir.
    ledger_url: SecretStr | None = None
    # Keep the ledger's entries this many days; older sessions are rolled up into daily
    # per-component totals (reports stay right) and their entries deleted. Unset: keep all.
    ledger_retention_days: float | None = Field(default=None, gt=0)
    prices_file: Path | None = None
    core_hour_usd: Decimal | None = Field(default=None, ge=0)
    # Resource sampling period (psutil + event-loop lag).
    monitor_interval_s: float = Field(default=2.0, gt=0)

    # Input limits; exceeding one yields an error frame, never a dropped connection.
    max_text_chars: int = Field(default=4000, ge=1)
    max_frame_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_audio_s: float = Field(default=60.0, gt=0)
    # Output limits per utterance: a reply longer than this is cut (the LLM stream is closed,
    # synthesis stops) and the cut is reported. Without them one long echoed text became
    # minutes of speech and tens of seconds of shared model time.
    max_reply_chars: int = Field(default=1500, ge=1)
    max_reply_audio_s: float = Field(default=120.0, gt=0)
    # Connections: at most this many at once (then HTTP 503, so file descriptors cannot be
    # exhausted), and a client must finish its request headers / WebSocket handshake within
    # handshake_timeout_s or the socket is closed.
    max_connections: int = Field(default=5000, ge=1)
    # Admission (docs/deploy.md): at most this many sessions at once; unset: the capacity the
    # resource monitor estimates once it has measured 50 turns (before that, no cap but the
    # connection cap). New sessions are also refused while the event loop is this late
    # (0: never). Beyond either: HTTP 503 with Retry-After at the handshake.
    max_sessions: int | None = Field(default=None, ge=1)
    shed_loop_lag_ms: float = Field(default=1000.0, ge=0)
    # On SIGTERM/SIGINT running turns get this long to finish before clients are closed.
    drain_timeout_s: float = Field(default=30.0, ge=0, le=3600)
    handshake_timeout_s: float = Field(default=10.0, gt=0, le=600)
    # A client that does not read for this long (its send buffer full) is closed with 1008;
    # while it is slow, token frames are dropped first (server/backpressure.py).
    send_timeout_s: float = Field(default=10.0, gt=0, le=600)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _toml_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)
