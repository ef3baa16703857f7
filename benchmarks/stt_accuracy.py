"""Speech-to-text alone on the spoken set: keyword hits per noise, and time per clip.

Compares embedded Whisper configurations (model, encoder window, vocabulary prompt) without a
server, to choose the default:

    python -m benchmarks.stt_accuracy tiny30,tiny10,tiny10v,base10,base10v tune
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
CONFIGS: dict[str, dict[str, Any]] = {
    "tiny30": {"model": "tiny.en", "window_s": 30},
    "tiny10": {"model": "tiny.en", "window_s": 10},
    "tiny10v": {"model": "tiny.en", "window_s": 10, "vocabulary": VOCABULARY},
    "tiny30v": {"model": "tiny.en", "window_s": 30, "vocabulary": VOCABULARY},
    "base10": {"model": "base", "window_s": 10},
    "base10v": {"model": "base", "window_s": 10, "vocabulary": VOCABULARY},
}


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
        stt = WhisperSTT(runner, **CONFIGS[name])
        hits: dict[str, list[int]] = {}
        times = []
        for item, noise, pcm in clips:
            start = time.perf_counter()
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
