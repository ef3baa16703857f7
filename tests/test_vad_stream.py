"""Streamed microphone audio through the real VAD and endpointer (speech synthesized by Piper).

STT/LLM/TTS are fakes here, so the tests can see exactly which audio reached the STT and when:
this is where speculative transcription is checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from tests.conftest import Fakes, RunningServer, Speaker, check_invariants, silence
from voicewire.client import Client

Make = Callable[..., RunningServer]


async def test_server_vad_ends_the_turn_and_reuses_the_speculative_transcript(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    fakes.stt.transcripts = ["what time is it"]
    srv = fake_server(turn_detection="server_vad", silence_ms=300, speculative_stt_ms=120)
    client = await Client.connect(srv.ws_url)
    speech = speaker.say("What time is it?")
    await client.stream_audio(speech + silence(700), realtime=False)
    result = await client.collect(timeout=20)
    frames = [r.frame for r in result.frames]
    check_invariants(frames)
    types = [f.type for f in frames]
    assert types[:2] == ["speech_started", "speech_stopped"]
    assert types.index("speech_stopped") < types.index("stt_start")
    stt = result.first("stt_complete")
    assert stt is not None and stt.text == "what time is it"  # type: ignore[attr-defined]
    # one transcription, started at the pause: its audio ends ~120 ms into the silence,
    # before the 300 ms that ended the turn
    assert len(fakes.stt.calls) == 1
    heard_ms = len(fakes.stt.calls[0]) / 32
    started = result.first("speech_started").offset_ms  # type: ignore[union-attr]
    stopped = result.first("speech_stopped").offset_ms  # type: ignore[union-attr]
    assert heard_ms < stopped - started + 300  # pre-roll included, final silence not
    await client.close()


async def test_speech_after_a_pause_drops_the_speculation(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    first, second = speaker.say("Hello there."), speaker.say("How are you?")
    fakes.stt.respond = lambda pcm: "whole" if len(pcm) >= len(first) + len(second) else "partial"
    srv = fake_server(turn_detection="server_vad", silence_ms=900, speculative_stt_ms=120)
    client = await Client.connect(srv.ws_url)
    await client.stream_audio(first + silence(250) + second + silence(1500), realtime=False)
    result = await client.collect(timeout=20)
    assert [f.type for f in (r.frame for r in result.frames)].count("speech_started") == 1
    stt = result.first("stt_complete")
    assert stt is not None and stt.text == "whole"  # type: ignore[attr-defined]
    # the speculation at the first pause may or may not have started before it was superseded
    assert 1 <= len(fakes.stt.calls) <= 2
    await client.close()


async def test_without_speculation_the_whole_turn_is_transcribed_once(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    srv = fake_server(turn_detection="server_vad", speculative_stt_ms=0)
    client = await Client.connect(srv.ws_url)
    await client.stream_audio(speaker.say("Good morning.") + silence(800), realtime=False)
    result = await client.collect(timeout=20)
    assert result.status == "completed" and len(fakes.stt.calls) == 1
    await client.close()


async def test_two_turns_in_one_stream(fake_server: Make, fakes: Fakes, speaker: Speaker) -> None:
    fakes.stt.transcripts = ["one", "two"]
    # sent at once, the second question arrives while the first is answered: without
    # barge-in off it would (rightly) interrupt that answer
    srv = fake_server(turn_detection="server_vad", barge_in=False)
    client = await Client.connect(srv.ws_url)
    audio = (
        speaker.say("First question.") + silence(800) + speaker.say("Second one.") + silence(800)
    )
    await client.stream_audio(audio, realtime=False)
    first = await client.collect(timeout=20)
    second = await client.collect(timeout=20)
    assert first.utterance_id != second.utterance_id
    assert [r.first("stt_complete").text for r in (first, second)] == ["one", "two"]  # type: ignore[union-attr]
    await client.close()


async def test_silence_and_noise_start_no_turn(fake_server: Make, fakes: Fakes) -> None:
    import numpy as np

    srv = fake_server(turn_detection="server_vad")
    client = await Client.connect(srv.ws_url)
    rng = np.random.default_rng(0)
    hiss = rng.normal(0, 30, 16000 * 2).astype(np.int16).tobytes()  # faint hiss, -60 dBFS
    hum = rng.normal(0, 1000, 16000 * 2).astype(np.int16).tobytes()  # loud fan noise
    await client.stream_audio(silence(1000) + hiss + silence(500) + hum, realtime=False)
    pong_ref = "after-noise"
    await client.send_json({"type": "ping", "ref": pong_ref})
    frame = await client.next_frame(10)
    assert frame.frame.type == "pong", frame.frame  # nothing else came first
    assert not fakes.stt.calls
    await client.close()


async def test_switching_to_manual_waits_for_commit(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    srv = fake_server(turn_detection="server_vad")
    client = await Client.connect(srv.ws_url)
    await client.send_json({"type": "session_update", "turn_detection": "manual"})
    await client.expect("ack")
    await client.stream_audio(speaker.say("Hold on.") + silence(900), realtime=False)
    await client.send_json({"type": "ping"})
    while (r := await client.next_frame(10)).frame.type != "pong":
        assert r.frame.type == "speech_started", r.frame  # no turn ends by itself
    await client.send_json({"type": "audio_commit"})
    ack = await client.expect("ack")
    assert (await client.collect(ack.utterance_id, timeout=20)).status == "completed"
    assert len(fakes.stt.calls) == 1  # the transcript made during the pause was reused
    await client.close()


async def test_a_pause_after_unfinished_words_does_not_end_the_turn(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    """Semantic end of turn (issue 14): "Show me a bar chart of sales:" + 600 ms + the figures
    is one turn, sent faster than real time; a fixed 300 ms silence made it two."""
    first, second = speaker.say("Show me a bar chart of sales."), speaker.say("January 120.")
    whole = "Show me a bar chart of sales: January 120, and March 90."
    fakes.stt.respond = lambda pcm: whole if len(pcm) > len(first) + 16_000 else "A bar chart of:"
    srv = fake_server(turn_detection="server_vad", silence_ms=300, max_silence_ms=1200)
    client = await Client.connect(srv.ws_url)
    await client.stream_audio(first + silence(600) + second + silence(1500), realtime=False)
    result = await client.collect(timeout=20)
    types = [r.frame.type for r in result.frames]
    assert types.count("speech_started") == 1 and types.count("speech_stopped") == 1
    stt = result.first("stt_complete")
    assert stt is not None and stt.text == whole  # type: ignore[attr-defined]
    await client.close()
    async with httpx.AsyncClient(base_url=srv.base) as http:
        assert (await http.get("/metrics")).json()["turn_waits"] == {"punctuation": 1}
        prom = (await http.get("/metrics/prometheus")).text
    assert re.search(
        r'^voicewire_turn_waits_total\{reason="punctuation",worker="[^"]+"\} 1\.0$', prom, re.M
    )


async def test_with_a_fixed_silence_the_same_pause_ends_the_turn(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    """The control for the test above: max_silence_ms at or below silence_ms is a fixed
    silence, and the same audio is two turns."""
    first, second = speaker.say("Show me a bar chart of sales."), speaker.say("January 120.")
    fakes.stt.respond = lambda pcm: "A bar chart of:"
    srv = fake_server(turn_detection="server_vad", silence_ms=300, max_silence_ms=0)
    client = await Client.connect(srv.ws_url)
    await client.stream_audio(first + silence(600) + second + silence(1500), realtime=False)
    await client.collect(timeout=20)
    await client.collect(timeout=20)  # the second half, a turn of its own
    await client.close()


def test_steady_noise_neither_holds_a_turn_open_nor_starts_one(speaker: Speaker) -> None:
    """Pink noise 15 dB under the voice: webrtcvad alone calls some of it speech, often
    enough that 1.2 s of silence (a turn waiting for unfinished words) did not come, or that
    the room started a second turn. The floor follows the room's noise."""
    import numpy as np
    from benchmarks.spoken_set import with_noise

    from voicewire.pipeline.audio_input import AudioInput
    from voicewire.pipeline.endpointing import EndpointEvent, EndpointingConfig

    outcomes = []
    for text in ("Plot a line chart of visitors.", "Show me a bar chart of sales."):
        speech = np.frombuffer(speaker.say(text), dtype=np.int16)
        for seed in range(4):
            noisy = with_noise(speech, "pink", 15.0, seed=seed, trailing_ms=3000).tobytes()
            config = EndpointingConfig(silence_ms=1200, pause_ms=0, min_speech_ms=120)  # as served
            audio = AudioInput(config, 2, vad_ends_turns=True)
            events = [e.kind for e in audio.feed(noisy, 0.0)]
            starts = events.count(EndpointEvent.SPEECH_START)
            outcomes.append((starts, events.count(EndpointEvent.END)))
    assert outcomes == [(1, 1)] * 8  # one turn each, ended though the noise went on


async def test_a_client_that_stops_sending_mid_turn_gets_its_turn_ended(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    """A muted microphone or a push-to-talk button let go without ``audio_commit``: the audio
    stops 100 ms after the words, which sound unfinished. No more audio ever comes; after
    ``mic_stall_ms`` the missing audio is heard as silence and the turn ends and is answered
    (it was held open for ever)."""
    speech = speaker.say("Show me a bar chart of sales.")
    fakes.stt.respond = lambda pcm: "Show me a bar chart of:"
    srv = fake_server(
        turn_detection="server_vad", silence_ms=300, max_silence_ms=1200, mic_stall_ms=300
    )
    client = await Client.connect(srv.ws_url)
    await client.stream_audio(speech + silence(100), realtime=False)
    result = await client.collect(timeout=20)
    types = [r.frame.type for r in result.frames]
    assert types.count("speech_started") == 1 and types.count("speech_stopped") == 1
    assert result.status == "completed"
    stt = result.first("stt_complete")
    assert stt is not None and stt.text == "Show me a bar chart of:"  # type: ignore[attr-defined]
    # the turn goes on as usual: the next speech is a turn of its own
    await client.stream_audio(speaker.say("Thanks.") + silence(1500), realtime=False)
    assert (await client.collect(timeout=20)).status == "completed"
    await client.close()


async def test_audio_that_keeps_coming_is_never_taken_for_a_stall(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    """The control: a 2 s request streamed in real time, with a stall timeout far shorter than
    it, is one turn (the timer is re-armed while audio comes, not fired at its first due)."""
    speech = speaker.say("Show me a bar chart of sales for January, February and March.")
    fakes.stt.respond = lambda pcm: "whole" if len(pcm) >= len(speech) // 2 else "cut"
    srv = fake_server(turn_detection="server_vad", silence_ms=300, mic_stall_ms=250)
    client = await Client.connect(srv.ws_url)
    await client.stream_audio(speech + silence(600), realtime=True)
    result = await client.collect(timeout=20)
    stt = result.first("stt_complete")
    assert stt is not None and stt.text == "whole"  # type: ignore[attr-defined]
    types = [r.frame.type for r in result.frames]
    assert types.count("speech_started") == 1 and types.count("speech_stopped") == 1
    await client.close()
