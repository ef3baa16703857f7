"""Endpointing as pure logic: VAD decisions and times in, events out."""

from __future__ import annotations

from voicewire.pipeline.endpointing import Endpointer, EndpointEvent, EndpointingConfig

FRAME = 20.0


def run(pattern: str, config: EndpointingConfig | None = None) -> list[tuple[float, EndpointEvent]]:
    """'S' is a speech frame, '.' a silent one; returns (frame start ms, event)."""
    ep = Endpointer(config or EndpointingConfig(silence_ms=300, min_speech_ms=60, pause_ms=120))
    events = []
    for i, ch in enumerate(pattern):
        event = ep.update(ch == "S", i * FRAME, FRAME)
        if event is not None:
            events.append((i * FRAME, event))
    return events


def test_turn_starts_after_min_speech_and_ends_after_silence() -> None:
    events = run("..SSSSSS" + "." * 20)
    assert events[0] == (4 * FRAME, EndpointEvent.SPEECH_START)  # 3rd speech frame: 60 ms
    assert (13 * FRAME, EndpointEvent.PAUSE) in events  # 120 ms after last speech at 160
    end = [t for t, e in events if e is EndpointEvent.END]
    assert end == [22 * FRAME]  # speech ended at 160 ms; 160 + 300 = 460 = end of frame 22


def test_a_click_does_not_start_a_turn() -> None:
    assert run("..SS..S...S" + "." * 30) == []


def test_speech_after_a_pause_resumes_the_same_turn() -> None:
    events = [e for _, e in run("SSSSS" + "." * 8 + "SSSS" + "." * 20)]
    assert events == [
        EndpointEvent.SPEECH_START,
        EndpointEvent.PAUSE,
        EndpointEvent.RESUME,
        EndpointEvent.PAUSE,
        EndpointEvent.END,
    ]


def test_short_gaps_inside_speech_neither_pause_nor_end() -> None:
    events = [e for _, e in run("SSSS..SS...SSS" + "." * 3)]
    assert events == [EndpointEvent.SPEECH_START]


def test_pause_events_can_be_disabled() -> None:
    cfg = EndpointingConfig(silence_ms=200, min_speech_ms=40, pause_ms=0)
    assert [e for _, e in run("SSS" + "." * 12, cfg)] == [
        EndpointEvent.SPEECH_START,
        EndpointEvent.END,
    ]


def test_the_endpointer_is_ready_for_the_next_turn() -> None:
    events = [e for _, e in run("SSSS" + "." * 16 + "SSSS" + "." * 16)]
    assert events.count(EndpointEvent.SPEECH_START) == 2 and events.count(EndpointEvent.END) == 2


def judged(pattern: str, finished: bool) -> list[tuple[float, EndpointEvent]]:
    """As ``run``, with the semantic check on: CHECK answered ``finished`` at once."""
    config = EndpointingConfig(silence_ms=300, min_speech_ms=60, pause_ms=120, max_silence_ms=900)
    ep = Endpointer(config)
    events = []
    for i, ch in enumerate(pattern):
        event = ep.update(ch == "S", i * FRAME, FRAME)
        if event is EndpointEvent.CHECK and ep.decide(finished):
            event = EndpointEvent.END
        if event is not None:
            events.append((i * FRAME, event))
    return events


def test_a_finished_turn_ends_at_the_short_silence() -> None:
    events = judged("SSSSSSSS" + "." * 60, finished=True)
    assert [e for _, e in events][-1] is EndpointEvent.END
    assert events[-1][0] == 22 * FRAME  # 160 + 300 ms, as without the check


def test_an_unfinished_turn_waits_for_the_long_silence() -> None:
    events = judged("SSSSSSSS" + "." * 60, finished=False)
    kinds = [e for _, e in events]
    assert kinds == [
        EndpointEvent.SPEECH_START,
        EndpointEvent.PAUSE,
        EndpointEvent.CHECK,
        EndpointEvent.END,
    ]
    assert events[-1][0] == 52 * FRAME  # 160 + 900 ms


def test_speech_after_an_unfinished_verdict_is_the_same_turn_and_is_judged_anew() -> None:
    # a 600 ms pause (longer than 300, shorter than 900), then more words
    events = judged("SSSSSSSS" + "." * 30 + "SSSSSS" + "." * 60, finished=False)
    kinds = [e for _, e in events]
    assert kinds.count(EndpointEvent.CHECK) == 2  # asked again after the second part
    assert kinds.count(EndpointEvent.END) == 1


def test_a_click_in_the_long_silence_does_not_restart_it() -> None:
    # words, 600 ms of silence, one 20 ms click, then silence: judged unfinished, the turn
    # still ends 900 ms after the words (a click is not the user going on)
    events = judged("SSSSSSSS" + "." * 30 + "S" + "." * 60, finished=False)
    assert [e for _, e in events].count(EndpointEvent.RESUME) == 0
    assert events[-1] == (52 * FRAME, EndpointEvent.END)


def test_a_dip_inside_the_word_that_goes_on_does_not_end_the_turn() -> None:
    # words, a 260 ms pause, then more words whose first 60 ms has a 20 ms dip: one turn
    events = judged("SSSSSSSS" + "." * 13 + "S.SS" + "SSSS" + "." * 30, finished=True)
    kinds = [e for _, e in events]
    assert kinds.count(EndpointEvent.END) == 1
    assert events[-1][0] > 29 * FRAME  # ended after the second part, not at the pause
