"""Provider selection: turn ``kind[:model]`` settings into STT, LLM and TTS instances.

Unknown kinds fail here, at start-up, with a message that lists what exists, never at the
first turn.
"""

from __future__ import annotations

from voicewire.config import Settings
from voicewire.providers.base import LLM, STT, TTS, Providers
from voicewire.providers.runner import ModelRunner

STT_KINDS = ("local",)
LLM_KINDS = ("local",)
TTS_KINDS = ("local",)


class ConfigError(ValueError):
    """The configuration names something that cannot be built."""


def _kind(spec: str, stage: str, kinds: tuple[str, ...]) -> tuple[str, str]:
    kind, _, model = spec.partition(":")
    if kind not in kinds:
        raise ConfigError(f"unknown {stage} provider {spec!r}; choose one of: {', '.join(kinds)}")
    return kind, model


def build_stt(settings: Settings, runner: ModelRunner) -> STT:
    _kind(settings.stt, "stt", STT_KINDS)
    from voicewire.providers.local.whisper import WhisperSTT

    return WhisperSTT(runner, threads=settings.model_threads, window_s=settings.stt_window_s)


def build_llm(settings: Settings) -> LLM:
    _kind(settings.llm, "llm", LLM_KINDS)
    from voicewire.providers.local.agent import RulesAgent

    return RulesAgent()


def build_tts(settings: Settings, runner: ModelRunner) -> TTS:
    _kind(settings.tts, "tts", TTS_KINDS)
    from voicewire.providers.local.piper import PiperTTS

    return PiperTTS(runner, threads=settings.model_threads)


def validate(settings: Settings) -> None:
    """Check every provider spec without loading anything (fast, for start-up and config)."""
    _kind(settings.stt, "stt", STT_KINDS)
    _kind(settings.llm, "llm", LLM_KINDS)
    _kind(settings.tts, "tts", TTS_KINDS)


def build_providers(settings: Settings, runner: ModelRunner) -> Providers:
    return Providers(
        stt=build_stt(settings, runner),
        llm=build_llm(settings),
        tts=build_tts(settings, runner),
    )
