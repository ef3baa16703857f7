"""Silero VAD: a speech detector that keeps hearing speech in noise.

webrtcvad decides from band energies, so in white noise at 15 dB the quiet consonants of a
word ("Microsoft's stock") sink under the hiss and the speech is lost long enough to end the
turn inside the sentence (4 of 5 development voices at 300 ms of silence, 3 at 400). Silero
(v6, MIT; the ONNX file faster-whisper ships, ~1 MB, so nothing is added to install) is a small
recurrent network trained on speech in noise: it ended none of them early
(docs/performance.md, "Hearing"; ``tests/test_silero.py``).

It runs on 32 ms windows (512 samples at 16 kHz, with 64 samples of context) and carries its
state across windows, so each session owns a ``SileroVad``; the ONNX session is shared. About
0.1 ms of CPU per window (~3 ms per second of audio): far below what Whisper spends on the
same audio. Windows under the energy floor are not run (a quiet room costs nothing).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

WINDOW = 512  # samples at 16 kHz: the model's input
CONTEXT = 64  # samples of the previous window it sees too
THRESHOLD = 0.5  # speech starts at this probability ...
RELEASE = 0.35  # ... and goes on until it falls under this (hysteresis, as Silero advises)


@functools.cache
def _session() -> Any:
    import faster_whisper
    import onnxruntime

    path = Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"
    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1  # a window is tiny: threads would cost more than they save
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"], sess_options=opts
    )


def load() -> None:
    """Load the model now (at start-up), not in the first session that speaks."""
    _session()


class SileroVad:
    """``is_speech`` over 20 ms frames, like ``webrtcvad.Vad``: each frame gets the verdict of
    the latest full window (at most 32 ms behind)."""

    def __init__(self, energy_floor: float = 0.0) -> None:
        self._model = _session()
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._window = np.zeros(CONTEXT + WINDOW, np.float32)  # context, then the window
        self._filled = 0  # samples of the window received
        self._floor = energy_floor * energy_floor * WINDOW / 32768.0**2  # in window energy
        self.speaking = False
        self.probability = 0.0

    def is_speech(self, frame: bytes, sample_rate: int = 16_000) -> bool:
        samples = np.frombuffer(frame, np.int16).astype(np.float32) / 32768.0
        while samples.size:
            take = min(WINDOW - self._filled, samples.size)
            start = CONTEXT + self._filled
            self._window[start : start + take] = samples[:take]
            self._filled += take
            samples = samples[take:]
            if self._filled == WINDOW:
                self._judge()
        return self.speaking

    def _judge(self) -> None:
        window = self._window
        body = window[CONTEXT:]
        if float(np.dot(body, body)) < self._floor:
            self.probability = 0.0  # a quiet room: not worth a model call
        else:
            out, self._h, self._c = self._model.run(
                None, {"input": window[None], "h": self._h, "c": self._c}
            )
            self.probability = float(out[0])
        self.speaking = self.probability >= (RELEASE if self.speaking else THRESHOLD)
        window[:CONTEXT] = window[-CONTEXT:]
        self._filled = 0
