"""Provider selection: turn ``kind[:model]`` settings into STT, LLM and TTS instances.

A setting may list several specs, comma-separated: a fallback chain tried in order
(``openai:gpt-4o-mini,local``). Every mistake a configuration can hold (an unknown kind or
model, a missing key or base URL, a GGUF file that is not there) fails in :func:`validate`, at
start-up, with a message that says what to do; never at the first turn.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from voicewire.config import Settings
from voicewire.providers.base import LLM, STT, TTS, Providers, register_secret
from voicewire.providers.runner import ModelRunner

KINDS: dict[str, tuple[str, ...]] = {
    "stt": ("local", "simulated", "openai", "openai-compatible", "elevenlabs"),
    "llm": ("local", "simulated", "openai", "openai-compatible", "llama-cpp"),
    "tts": ("local", "simulated", "openai", "openai-compatible", "elevenlabs"),
}
DEFAULT_MODELS = {
    ("openai", "stt"): "gpt-4o-mini-transcribe",
    ("openai", "llm"): "gpt-4o-mini",
    ("openai", "tts"): "tts-1",
    ("elevenlabs", "stt"): "scribe_v1",
    ("elevenlabs", "tts"): "eleven_flash_v2_5",
}
# Models we know but cannot price per unit in prices.toml (billed by audio tokens).
UNPRICED_MODELS = {("openai", "tts"): ("gpt-4o-mini-tts",)}
DEFAULT_VOICES = {"openai": "alloy", "openai-compatible": "alloy"}


class ConfigError(ValueError):
    """The configuration names something that cannot be built."""


@dataclass(frozen=True, slots=True)
class Spec:
    kind: str
    model: str


def parse(settings: Settings, stage: str) -> list[Spec]:
    """The chain a stage setting names, checked; raises :class:`ConfigError`."""
    raw = getattr(settings, stage)
    parts = [p.strip() for p in raw.split(",")]
    if not all(parts):
        raise ConfigError(f"{stage} setting {raw!r} has an empty entry")
    return [_check(settings, stage, part) for part in parts]


def _check(settings: Settings, stage: str, part: str) -> Spec:
    kind, _, model = part.partition(":")
    kind, model = kind.strip(), model.strip()
    if kind not in KINDS[stage]:
        raise ConfigError(
            f"unknown {stage} provider {part!r}; choose one of: {', '.join(KINDS[stage])}"
        )
    if kind == "local" and stage == "llm" and model.endswith(".gguf"):
        if not Path(model).is_file():
            raise ConfigError(f"local:<file>.gguf needs an existing GGUF file ({model!r})")
        if importlib.util.find_spec("xllamacpp") is None:
            raise ConfigError("a local GGUF needs xllamacpp: pip install 'voicewire[llm]'")
    elif kind == "local":
        names = LOCAL_MODELS[stage]
        if model and model not in names:
            raise ConfigError(
                f"unknown local {stage} model {model!r}; embedded: {', '.join(names)} "
                f"(the default: {stage}=local). Other models: a cloud or openai-compatible "
                "provider, docs/providers.md"
            )
    elif kind == "simulated":
        from voicewire.providers.simulated import PROFILES

        if (model or "realistic") not in PROFILES:
            raise ConfigError(
                f"unknown simulated profile {model!r} for {stage}; choose one of: "
                + ", ".join(PROFILES)
            )
    elif kind in ("openai", "elevenlabs"):
        model = model or DEFAULT_MODELS[(kind, stage)]
        known = _known_models(settings, kind, stage)
        if model not in known:
            raise ConfigError(
                f"unknown {kind} {stage} model {model!r}; known: {', '.join(sorted(known))}. "
                "To use another, add its price row to a prices file (VOICEWIRE_PRICES_FILE, "
                "docs/costs.md)"
            )
        if model.endswith("_realtime"):
            raise ConfigError(f"{model!r} is a WebSocket streaming model; use scribe_v1 or v2")
        key = settings.openai_api_key if kind == "openai" else settings.elevenlabs_api_key
        if key is None or not key.get_secret_value():
            env = "OPENAI_API_KEY" if kind == "openai" else "ELEVENLABS_API_KEY"
            raise ConfigError(f"{stage} provider {kind} needs an API key: set {env}")
    elif kind == "openai-compatible":
        if not model:
            raise ConfigError(f"{stage} provider openai-compatible needs a model: {kind}:<model>")
        if not settings.compat_base_url:
            raise ConfigError(
                "openai-compatible needs the server's URL: set VOICEWIRE_COMPAT_BASE_URL "
                "(e.g. http://localhost:11434/v1 for Ollama)"
            )
    elif kind == "llama-cpp":
        if not model or not Path(model).is_file():
            raise ConfigError(
                f"llama-cpp needs the path of a GGUF file: llama-cpp:<path> ({model!r})"
            )
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(
                "llama-cpp needs llama-cpp-python: pip install 'voicewire[llama]' (compiles)"
            )
    return Spec(kind, model)


# The models that ship inside the installed packages, by the names users may write for them.
LOCAL_MODELS = {
    "stt": ("base", "faster-whisper/base", "whisper-base", "tiny.en", "faster-whisper/tiny.en"),
    "llm": ("rules-agent", "smollm2-135m"),  # a GGUF one: providers/local/gguf.py, [llm] extra
    "tts": ("en_US-joe-medium", "piper/en_US-joe-medium", "joe"),
}


def _known_models(settings: Settings, kind: str, stage: str) -> set[str]:
    from voicewire.costs.prices import PriceTable

    table = PriceTable.load(settings.prices_file, settings.core_hour_usd)
    priced = {p.model for p in table.prices if p.component == stage and p.provider == kind}
    return priced | set(UNPRICED_MODELS.get((kind, stage), ()))


def validate(settings: Settings) -> None:
    """Check every stage's chain without building anything (fast: start-up and ``config``)."""
    for stage in ("stt", "llm", "tts"):
        parse(settings, stage)


def endpoint_key(kind: str, stage: str) -> str | None:
    """The network endpoint a provider uses (the keys of the start-up checks); None: in process."""
    if kind in ("openai", "openai-compatible"):
        return kind
    return f"elevenlabs-{stage}" if kind == "elevenlabs" else None


class _Clients:
    """Network clients, one per endpoint, shared by every session and closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self._made: dict[str, Any] = {}
        for key in (settings.openai_api_key, settings.elevenlabs_api_key, settings.compat_api_key):
            register_secret(key.get_secret_value() if key else None)

    def _once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def policy(self, stage: str) -> Any:
        from voicewire.providers.cloud.net import NetPolicy

        s = self.s
        return NetPolicy(
            connect_s=s.provider_connect_timeout_s,
            read_s=getattr(s, f"{stage}_timeout_s"),
            retries=s.provider_retries,
            max_wait_s=s.provider_retry_max_wait_s,
        )

    def openai(self, kind: str, stage: str) -> Any:
        """An ``AsyncOpenAI`` for the stage: its timeouts; retries are ours (cloud/net.py)."""
        from openai import AsyncOpenAI

        s = self.s
        if kind == "openai":
            key, url = s.openai_api_key.get_secret_value(), s.openai_base_url  # type: ignore[union-attr]
        else:
            key = s.compat_api_key.get_secret_value() if s.compat_api_key else "not-needed"
            url = s.compat_base_url
        from voicewire.providers.cloud.net import http_client

        def make() -> AsyncOpenAI:
            http = http_client(self.policy(stage))
            return AsyncOpenAI(api_key=key, base_url=url, max_retries=0, http_client=http)

        base = self._once(endpoint_key(kind, stage), make)  # type: ignore[arg-type]
        return base.with_options(timeout=self.policy(stage).timeout(), max_retries=0)

    def elevenlabs(self, stage: str) -> Any:
        from voicewire.providers.cloud import elevenlabs

        s = self.s
        key = s.elevenlabs_api_key.get_secret_value()  # type: ignore[union-attr]
        return self._once(
            endpoint_key("elevenlabs", stage),  # type: ignore[arg-type]
            lambda: elevenlabs.client(s.elevenlabs_base_url, key, self.policy(stage)),
        )

    async def check(self) -> dict[str, str]:
        """Open a connection to every endpoint and ask it something free (its model list), so
        the first turn finds a warm connection and a rejected key shows at start-up."""
        from voicewire.providers.cloud import net

        async def one(key: str, client: Any) -> str:
            try:
                if key.startswith("elevenlabs"):
                    response = await client.get("/v1/models")
                    if response.status_code >= 400:
                        raise net.HTTPStatusFailure(
                            response.status_code, response.headers, response.content
                        )
                else:
                    await client.get("/models", cast_to=object)
            except Exception as exc:
                return net.classify(exc).reason
            return "ok"

        keys = list(self._made)
        results = await asyncio.gather(*(one(k, self._made[k]) for k in keys))
        return dict(zip(keys, results, strict=True))

    async def aclose(self) -> None:
        for client in self._made.values():
            await (getattr(client, "aclose", None) or client.close)()


def _stt(spec: Spec, s: Settings, runner: ModelRunner, net: _Clients) -> STT:
    name = f"{spec.kind}:{spec.model}"
    if spec.kind == "simulated":
        from voicewire.providers.simulated import SimulatedSTT, profile

        return SimulatedSTT(profile(spec.model))
    if spec.kind in ("openai", "openai-compatible"):
        from voicewire.providers.cloud.openai_audio import OpenAISTT

        client = net.openai(spec.kind, "stt")
        return OpenAISTT(name, client, spec.model, net.policy("stt"), s.stt_language)
    if spec.kind == "elevenlabs":
        from voicewire.providers.cloud.elevenlabs import ElevenLabsSTT

        http = net.elevenlabs("stt")
        return ElevenLabsSTT(name, http, spec.model, net.policy("stt"), s.stt_language)
    from voicewire.providers.local.whisper import WhisperSTT

    model = "tiny.en" if "tiny" in spec.model else "base"
    return WhisperSTT(
        runner,
        s.model_threads,
        s.stt_window_s,
        model,
        vocabulary=s.stt_vocabulary or "",
        beam_size=s.stt_beam_size,
        speculative_beam_size=s.stt_speculative_beam_size,
    )


def _llm(spec: Spec, s: Settings, runner: ModelRunner, net: _Clients) -> LLM:
    if spec.kind == "simulated":
        from voicewire.providers.simulated import SimulatedLLM, profile

        return SimulatedLLM(profile(spec.model), tool_call=s.sim_tool_call)
    if spec.kind in ("openai", "openai-compatible"):
        from voicewire.providers.cloud.openai_llm import OpenAILLM

        return OpenAILLM(
            f"{spec.kind}:{spec.model}",
            net.openai(spec.kind, "llm"),
            spec.model,
            net.policy("llm"),
            system_prompt=s.system_prompt,
            max_tokens=s.llm_max_tokens,
            compatible=spec.kind == "openai-compatible",
            reasoning_effort=s.llm_reasoning_effort,
        )
    if spec.kind == "llama-cpp":
        from voicewire.providers.llamacpp import LlamaCppLLM

        return LlamaCppLLM(
            Path(spec.model), runner, s.system_prompt, s.model_threads, max_tokens=s.llm_max_tokens
        )
    from voicewire.providers.local.agent import RulesAgent

    if spec.kind == "local" and spec.model not in ("", "rules-agent"):
        from voicewire.providers.local.gguf import GGUFLLM, MODELS, GGUFModel
        from voicewire.providers.local.hybrid import HybridLLM

        known = MODELS.get(spec.model) or GGUFModel.user_file(Path(spec.model))
        model = GGUFLLM(replace(known, tool_calls=s.llm_model_tools), s.model_threads)
        return HybridLLM(RulesAgent(), model)
    return RulesAgent()


def _tts(spec: Spec, s: Settings, runner: ModelRunner, net: _Clients) -> TTS:
    name = f"{spec.kind}:{spec.model}"
    if spec.kind == "simulated":
        from voicewire.providers.simulated import SimulatedTTS, profile

        return SimulatedTTS(profile(spec.model), s.sim_tts_rate)
    if spec.kind in ("openai", "openai-compatible"):
        from voicewire.providers.cloud.openai_audio import OpenAITTS

        voice = s.tts_voice or DEFAULT_VOICES[spec.kind]
        client = net.openai(spec.kind, "tts")
        return OpenAITTS(name, client, spec.model, voice, net.policy("tts"))
    if spec.kind == "elevenlabs":
        from voicewire.providers.cloud.elevenlabs import DEFAULT_VOICE, ElevenLabsTTS

        http = net.elevenlabs("tts")
        voice = s.tts_voice or DEFAULT_VOICE
        return ElevenLabsTTS(name, http, spec.model, voice, s.tts_sample_rate, net.policy("tts"))
    from voicewire.providers.local.piper import PiperTTS

    return PiperTTS(runner, threads=s.model_threads)


def build_providers(settings: Settings, runner: ModelRunner) -> Providers:
    from voicewire.providers import fallback

    net = _Clients(settings)
    breaker = {"failures": settings.breaker_failures, "cooldown_s": settings.breaker_cooldown_s}

    def chain(stage: str, make: Callable[..., Any], wrap: Callable[..., Any]) -> Any:
        members = [make(spec, settings, runner, net) for spec in parse(settings, stage)]
        return members[0] if len(members) == 1 else wrap(members, **breaker)

    tts: TTS = chain("tts", _tts, fallback.FallbackTTS)
    rate = settings.output_sample_rate
    if rate and rate != tts.sample_rate:
        tts = fallback.ResampledTTS(tts, rate)
    return Providers(
        stt=chain("stt", _stt, fallback.FallbackSTT),
        llm=chain("llm", _llm, fallback.FallbackLLM),
        tts=tts,
        close=net.aclose,
        check=net.check,
    )
