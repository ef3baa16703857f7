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

    def recording(features: Any, window: int, seconds: float, beam: int) -> str:
        beams.append(beam)
        return decode(features, window, seconds, beam)

    stt._decode = recording  # type: ignore[method-assign]
    pcm = (np.sin(np.arange(16_000) / 5) * 3000).astype(np.int16).tobytes()
    await stt.transcribe(pcm, 16_000)
    ctx = contextvars.copy_context()
    ctx.run(model_priority.set, Priority.SPECULATIVE)
    await asyncio.get_running_loop().create_task(stt.transcribe(pcm, 16_000), context=ctx)
    assert beams[0] == 1 and beams[-1] == 5
