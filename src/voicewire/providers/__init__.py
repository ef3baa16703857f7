"""Provider selection: turn ``kind[:model]`` settings into STT, LLM and TTS instances.

Unknown kinds fail here, at start-up, with a message that lists what exists, never at the
first turn.
"""

from __future__ import annotations

from voicewire.config import Settings
from voicewire.providers.base import LLM, STT, TTS, Providers
from voicewire.providers.runner import ModelRunner

KINDS = ("local", "simulated")


class ConfigError(ValueError):
    """The configuration names something that cannot be built."""


def _kind(spec: str, stage: str) -> tuple[str, str]:
    kind, _, model = spec.partition(":")
    if kind not in KINDS:
        raise ConfigError(f"unknown {stage} provider {spec!r}; choose one of: {', '.join(KINDS)}")
    if kind == "simulated":
        from voicewire.providers.simulated import PROFILES

        if (model or "realistic") not in PROFILES:
            raise ConfigError(
                f"unknown simulated profile {model!r} for {stage}; choose one of: "
                + ", ".join(PROFILES)
            )
    return kind, model


def build_stt(settings: Settings, runner: ModelRunner) -> STT:
    kind, model = _kind(settings.stt, "stt")
    if kind == "simulated":
        from voicewire.providers.simulated import SimulatedSTT, profile

        return SimulatedSTT(profile(model))
    from voicewire.providers.local.whisper import WhisperSTT

    return WhisperSTT(runner, threads=settings.model_threads, window_s=settings.stt_window_s)


def build_llm(settings: Settings) -> LLM:
    kind, model = _kind(settings.llm, "llm")
    if kind == "simulated":
        from voicewire.providers.simulated import SimulatedLLM, profile

        return SimulatedLLM(profile(model), tool_call=settings.sim_tool_call)
    from voicewire.providers.local.agent import RulesAgent

    return RulesAgent()


def build_tts(settings: Settings, runner: ModelRunner) -> TTS:
    kind, model = _kind(settings.tts, "tts")
    if kind == "simulated":
        from voicewire.providers.simulated import SimulatedTTS, profile

        return SimulatedTTS(profile(model))
    from voicewire.providers.local.piper import PiperTTS

    return PiperTTS(runner, threads=settings.model_threads)


def validate(settings: Settings) -> None:
    """Check every provider spec without loading anything (fast, for start-up and config)."""
    _kind(settings.stt, "stt")
    _kind(settings.llm, "llm")
    _kind(settings.tts, "tts")


def build_providers(settings: Settings, runner: ModelRunner) -> Providers:
    return Providers(
        stt=build_stt(settings, runner),
        llm=build_llm(settings),
        tts=build_tts(settings, runner),
    )
