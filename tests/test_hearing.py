"""Hearing the user right, through a real server with the embedded models (issue 14).

Speech from ``benchmarks/spoken_set.py``: espeak-ng voices the project never tuned on (the
held-out half), clean and in 15 dB noise, sent faster than real time. The full figures, for
every voice and noise, are in docs/performance.md ("Hearing"); these tests hold a sample of
them to the targets there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from benchmarks.hearing import one_clip, routed
from benchmarks.spoken_set import (
    HELD_OUT,
    HELD_OUT_VOICES,
    TRAILING_MS,
    TUNE,
    TUNE_VOICES,
    Synth,
    keyword_hits,
    render,
)

from tests.conftest import RunningServer, start_server
from voicewire.protocol import INPUT_SAMPLE_RATE

pytestmark = pytest.mark.models
TAIL_BYTES = INPUT_SAMPLE_RATE * TRAILING_MS // 1000 * 2


@pytest.fixture(scope="module")
def model_server() -> Iterator[RunningServer]:
    srv = start_server(None, warmup=True, turn_detection="server_vad")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def synth() -> Synth:
    return Synth()


async def test_requests_with_pauses_inside_are_one_turn(
    model_server: RunningServer, synth: Synth
) -> None:
    """A list said with pauses ("a bar chart of sales: ... January 120, ...") is one turn: a
    fixed 300 ms silence split most of these in two or three."""
    voice = HELD_OUT_VOICES[0]
    paused = [item for item in HELD_OUT if item.pauses]
    assert len(paused) >= 6
    splits = []
    for i, item in enumerate(paused):
        pcm = render(synth, item, voice, None, seed=i)
        row = await one_clip(model_server.ws_url, pcm, len(pcm) - TAIL_BYTES, "vad", True)
        if row["turns"] != 1:
            splits.append((item.text, row["transcript"]))
    # measured: none of 7 split for this voice (a fixed 300 ms silence split most of them)
    assert not splits


async def test_a_finished_request_is_not_kept_waiting(
    model_server: RunningServer, synth: Synth
) -> None:
    """The long silence is only for words that sound unfinished: a complete question ends
    at the short one, so its reply starts well before the long silence has passed."""
    item = next(i for i in TUNE if i.text.startswith("What is the CPU usage"))
    pcm = render(synth, item, TUNE_VOICES[1], None, seed=0)
    row = await one_clip(model_server.ws_url, pcm, len(pcm) - TAIL_BYTES, "vad", False)
    assert row["turns"] == 1 and routed(item, row["calls"])
    assert row["ttfa_ms"] is not None and row["ttfa_ms"] < 1200  # max_silence_ms


async def test_tool_words_are_heard_and_routed_on_an_unseen_voice(
    model_server: RunningServer, synth: Synth
) -> None:
    """Clean speech only: in 15 dB noise this voice is still far below target (see
    docs/performance.md); a floor there would only pin today's shortfall."""
    noise = None
    voice = HELD_OUT_VOICES[1]
    hits = said = ok = 0
    misses = []
    for i, item in enumerate(HELD_OUT):
        pcm = render(synth, item, voice, noise, seed=i)
        row = await one_clip(model_server.ws_url, pcm, len(pcm) - TAIL_BYTES, "vad", True)
        h, k = keyword_hits(item, row["transcript"])
        hits, said = hits + h, said + k
        good = routed(item, row["calls"]) and row["turns"] == 1
        ok += good
        if not good or h < k:
            misses.append((item.text, row["transcript"], row["calls"]))
    # measured on 2026-12-02: 88 % of keywords, 17 of 18 routed (the targets are 92 %
    # and 95 %); these floors catch a regression, they are not the goal
    assert hits / said >= 0.85, misses
    assert ok / len(HELD_OUT) >= 0.83, misses
