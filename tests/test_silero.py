"""The Silero speech detector: it keeps hearing a sentence in noise that webrtcvad breaks up."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.spoken_set import Item, Synth, Voice, with_noise

from voicewire.pipeline.audio_input import AudioInput
from voicewire.pipeline.endpointing import EndpointEvent, EndpointingConfig
from voicewire.pipeline.silero import SileroVad

pytestmark = pytest.mark.models


def turns_ended(vad: str, pcm: bytes) -> int:
    """Turns the endpointer ends in ``pcm`` with ``vad``, at the server's defaults (400 ms of
    silence, 120 ms of speech to go on after a gap, the 1.5x noise floor)."""
    config = EndpointingConfig(silence_ms=400, min_speech_ms=120, pause_ms=0)
    audio = AudioInput(config, 2, True, 150.0, 1.5, vad=vad)
    events = []
    for i in range(0, len(pcm) - 639, 640):
        events += [e.kind for e in audio.feed(pcm[i : i + 640], 0.0)]
    return events.count(EndpointEvent.END)


def test_a_sentence_in_white_noise_is_one_turn() -> None:
    """In white noise at 15 dB the hiss covers the quiet consonants of "Microsoft's stock":
    webrtcvad loses the speech there long enough to end the turn at "What is Microsoft"
    (3 of the 5 development voices at this seed); Silero hears the sentence through."""
    item = Item(("What is Microsoft's stock price?",), (), None)
    speech = Synth().say(item, Voice("espeak", "en+f5", 155, pitch=70))
    pcm = with_noise(speech, "white", 15.0, seed=8).tobytes()
    assert turns_ended("webrtc", pcm) == 2  # why Silero is the default
    assert turns_ended("silero", pcm) == 1


def test_silence_costs_no_model_call_and_speech_is_heard() -> None:
    vad = SileroVad(energy_floor=150.0)
    calls = 0
    run = vad._model.run

    class Counting:
        def run(self, *args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            return run(*args, **kwargs)

    vad._model = Counting()
    quiet = np.zeros(16_000, np.int16).tobytes()
    assert not any(vad.is_speech(quiet[i : i + 640]) for i in range(0, len(quiet), 640))
    assert calls == 0
    item = Item(("Hello, how are you today?",), (), None)
    speech = Synth().say(item, Voice("espeak", "en-us", 170)).tobytes()
    heard = [vad.is_speech(speech[i : i + 640]) for i in range(0, len(speech) - 639, 640)]
    assert calls > 0 and sum(heard) > len(heard) // 2


def test_the_verdict_waits_for_a_full_window() -> None:
    """32 ms windows over 20 ms frames: a frame gets the latest window's verdict."""
    vad = SileroVad()
    vad.speaking = True  # as if speech had been heard
    assert vad.is_speech(np.zeros(320, np.int16).tobytes())  # 20 ms: no window yet
    assert not vad.is_speech(np.zeros(320, np.int16).tobytes())  # 40 ms: one window, silent
    assert vad.probability < 0.35
