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
