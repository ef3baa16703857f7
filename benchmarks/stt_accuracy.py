"""Speech-to-text alone on the spoken set: keyword hits per noise, and time per clip.

Compares embedded Whisper configurations (model, encoder window, vocabulary prompt) without a
server, to choose the default:

    python -m benchmarks.stt_accuracy tiny30,tiny10,tiny10v,base10,base10v tune

The ``-ns`` configurations run WebRTC noise suppression first: ``pip install pywebrtc-audio``
(not a dependency: it did not help, docs/performance.md).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from benchmarks.spoken_set import (
    HELD_OUT,
    HELD_OUT_VOICES,
    NOISES,
    TRAILING_MS,
    TUNE,
    TUNE_VOICES,
    Synth,
    keyword_hits,
    render,
)
from voicewire.providers.local.whisper import WhisperSTT
from voicewire.providers.runner import ModelRunner
from voicewire.tools import default_tools

VOCABULARY = default_tools(lambda: {}).vocabulary()
_NAMES = {"Apple", "Microsoft", "Google", "Amazon", "Tesla", "Nvidia", "Meta", "Netflix"}
VOCABULARY_NO_NAMES = ", ".join(w for w in VOCABULARY.rstrip(".").split(", ") if w not in _NAMES)
CONFIGS: dict[str, dict[str, Any]] = {
    "tiny30": {"model": "tiny.en", "window_s": 30},
    "tiny10": {"model": "tiny.en", "window_s": 10},
    "tiny10v": {"model": "tiny.en", "window_s": 10, "vocabulary": VOCABULARY},
    "tiny30v": {"model": "tiny.en", "window_s": 30, "vocabulary": VOCABULARY},
    "base10": {"model": "base", "window_s": 10},
    "base10v": {"model": "base", "window_s": 10, "vocabulary": VOCABULARY},
    "base10v-ns1": {"model": "base", "window_s": 10, "vocabulary": VOCABULARY, "denoise": 1},
    "base10v-ns2": {"model": "base", "window_s": 10, "vocabulary": VOCABULARY, "denoise": 2},
    "base10v-ns3": {"model": "base", "window_s": 10, "vocabulary": VOCABULARY, "denoise": 3},
    "base10v-b3": {"model": "base", "window_s": 10, "vocabulary": VOCABULARY, "beam_size": 3},
    "base10v-b5": {"model": "base", "window_s": 10, "vocabulary": VOCABULARY, "beam_size": 5},
    "base30v-b5": {"model": "base", "window_s": 30, "vocabulary": VOCABULARY, "beam_size": 5},
    "base10v-nonames": {"model": "base", "window_s": 10, "vocabulary": VOCABULARY_NO_NAMES},
}


def denoised(pcm: bytes, level: int) -> bytes:
    """WebRTC noise suppression (pywebrtc-audio), as a server could run it before STT."""
    import numpy as np
    import pywebrtc_audio

    ns = pywebrtc_audio.NoiseSuppressor(16_000, 1, level)
    samples = np.frombuffer(pcm, dtype=np.int16)
    return np.concatenate(
        [ns.process(samples[i : i + 160]) for i in range(0, len(samples) - 159, 160)]
    ).tobytes()


async def main(names: list[str], half: str) -> None:
    items, voices = (TUNE, TUNE_VOICES) if half == "tune" else (HELD_OUT, HELD_OUT_VOICES)
    synth = Synth()
    clips = []
    for voice in voices:
        for noise in NOISES:
            for i, item in enumerate(items):
                pcm = render(synth, item, voice, noise, seed=i)
                clips.append((item, noise[0] if noise else "clean", pcm[: -TRAILING_MS * 32]))
    runner = ModelRunner(1)
    for name in names:
        config = dict(CONFIGS[name])
        level = config.pop("denoise", 0)
        stt = WhisperSTT(runner, **config)
        hits: dict[str, list[int]] = {}
        times = []
        for item, noise, pcm in clips:
            start = time.perf_counter()
            if level:
                pcm = denoised(pcm, level)
            text = (await stt.transcribe(pcm, 16_000)).text
            times.append(time.perf_counter() - start)
            h, k = keyword_hits(item, text)
            acc = hits.setdefault(noise, [0, 0])
            acc[0] += h
            acc[1] += k
        times.sort()
        share = {n: round(100 * h / k, 1) for n, (h, k) in hits.items()}
        print(name, share, "median ms", round(1000 * times[len(times) // 2]), flush=True)
    runner.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].split(","), sys.argv[2] if len(sys.argv) > 2 else "tune"))
