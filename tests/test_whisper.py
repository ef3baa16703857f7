"""The embedded Whisper provider: the models it loads, the vocabulary prompt, the beam it uses."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import numpy as np
import pytest

from voicewire.providers.local import whisper
from voicewire.providers.local.whisper import WhisperSTT
from voicewire.providers.runner import ModelRunner, Priority, model_priority

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def runner() -> Any:
    r = ModelRunner(1)
    yield r
    r.shutdown()


def test_base_is_joined_from_its_packages_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    files = whisper.base_model_files()
    assert set(files) == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    monkeypatch.setattr(whisper, "BASE_SHA256", "0" * 64)  # a file that is not what it claims
    with pytest.raises(RuntimeError, match="not the file it should be"):
        whisper.base_model_files()


def test_the_vocabulary_is_the_decoders_previous_text(runner: ModelRunner) -> None:
    plain = WhisperSTT(runner, model="tiny.en")
    biased = WhisperSTT(runner, model="tiny.en", vocabulary="bar chart, CPU usage.")
    tok = biased._model.hf_tokenizer
    assert biased._prompt[0] == tok.token_to_id("<|startofprev|>")
    assert biased._prompt[-len(plain._prompt) :] == plain._prompt
    assert "bar chart, CPU usage." in tok.decode(biased._prompt[1 : -len(plain._prompt)])


async def test_speculative_transcriptions_use_the_wider_beam(runner: ModelRunner) -> None:
    stt = WhisperSTT(runner, model="tiny.en", beam_size=1, speculative_beam_size=5)
    beams: list[int] = []
    decode = stt._decode

    def recording(features: Any, window: int, seconds: float, beam: int, prompt: Any) -> str:
        beams.append(beam)
        return decode(features, window, seconds, beam, prompt)

    stt._decode = recording  # type: ignore[method-assign]
    pcm = (np.sin(np.arange(16_000) / 5) * 3000).astype(np.int16).tobytes()
    await stt.transcribe(pcm, 16_000)
    ctx = contextvars.copy_context()
    ctx.run(model_priority.set, Priority.SPECULATIVE)
    await asyncio.get_running_loop().create_task(stt.transcribe(pcm, 16_000), context=ctx)
    assert beams[0] == 1 and beams[-1] == 5


def test_a_transcript_cut_at_a_pause_is_finished_from_the_audio_after_it(
    runner: ModelRunner,
) -> None:
    """Whisper at times ends at a long pause and drops the rest of the turn ("Please make a
    line chart of visitors." and not the figures said after a breath): too few words for the
    voiced audio, so the audio after the pause is heard on its own, after the words so far."""
    from benchmarks.spoken_set import Item, Synth, Voice

    item = Item(
        ("Please make a line chart of visitors:", "Monday 300, Tuesday 420,", "Wednesday 380."),
        (),
        None,
        pauses=(700, 500),
    )
    pcm = Synth().say(item, Voice("espeak", "en+f5", 155, pitch=70)).tobytes()
    stt = WhisperSTT(runner, window_s=10, vocabulary="line chart, visitors.")
    audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768
    whole = stt._whole(stt._model.feature_extractor(audio), audio.size / 16_000, 1, stt._prompt)
    assert whisper._short_for(whole, audio), whole  # this voice is one Whisper cuts short
    text = stt._transcribe_sync(pcm)
    assert text.startswith(whole) and len(text.split()) >= len(whole.split()) + 3, text


def test_pauses_and_short_transcripts_are_found_in_the_audio() -> None:
    rate = 16_000
    tone = (np.sin(np.arange(rate) / 3) * 0.3).astype(np.float32)  # 1 s of "speech"
    gap = np.zeros(rate * 6 // 10, np.float32)
    audio = np.concatenate([tone, tone, gap, tone])  # 2 s, a 0.6 s pause, 1 s
    tail = whisper._tail_after_pause(audio)
    assert tail is not None and 0.9 <= tail.size / rate <= 1.2  # what came after the pause
    assert whisper._tail_after_pause(np.concatenate([tone, tone])) is None  # no pause
    assert whisper._short_for("one two three", audio)  # 3 s voiced, 11 letters
    assert not whisper._short_for("Show me a bar chart of sales: January 120.", audio)
    assert whisper._already_in("and March 90.", "Sales: January 120, and March 90")
    assert not whisper._short_for("hi", tone)  # too short to judge
