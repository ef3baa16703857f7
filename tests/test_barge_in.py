"""Barge-in on the real server with a real WebSocket client: the user talks over the agent.

Speech is Piper's voice through the real VAD; the agent's voice is a fake TTS (or Piper, for
echo). Every wait is on a frame, never on a clock, except where the client plays the part of
a loudspeaker and a microphone in real time (the echo test).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import BaseModel

from tests.conftest import Fakes, RunningServer, Speaker, serve, silence
from voicewire.audio import resample_pcm16
from voicewire.client import Client, Received
from voicewire.config import Settings
from voicewire.providers.base import Providers, ToolCallRequest
from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT
from voicewire.server.app import create_app
from voicewire.tools import Tool, ToolOutput, ToolRegistry

LONG = " ".join(f"Sentence number {n} of a long answer is spoken here." for n in range(1, 9))
Make = Callable[..., RunningServer]


async def read_until(
    client: Client, done: Callable[[Received], bool], timeout: float = 60
) -> list[Received]:
    """Frames until (and including) the first for which ``done`` is true."""
    frames = []
    while True:
        received = await client.next_frame(timeout)
        frames.append(received)
        if done(received):
            return frames


def completes(uid: str) -> Callable[[Received], bool]:
    return lambda r: r.frame.type == "utterance_complete" and r.frame.utterance_id == uid


def of(frames: list[Received], kind: str, uid: str | None = None) -> list[Any]:
    return [
        r.frame
        for r in frames
        if r.frame.type == kind and (uid is None or r.frame.utterance_id == uid)
    ]


async def start_reply(client: Client, text: str = "talk to me") -> str:
    """Ask; return the utterance id once its first audio chunk has arrived."""
    await client.send_json({"type": "user_text", "text": text})
    ack = await client.expect("ack")
    await read_until(client, lambda r: r.frame.type == "tts_chunk")
    return ack.utterance_id  # type: ignore[return-value]


@pytest.fixture
def long_reply(fakes: Fakes) -> Fakes:
    fakes.llm.steps = [FakeLLMStep(LONG), FakeLLMStep("Sure.")]
    fakes.tts.ms_per_char = 15  # about 7 s of reply audio, paced 1.5 s ahead
    return fakes


async def test_speech_over_the_reply_interrupts_it_and_becomes_the_next_turn(
    fake_server: Make, long_reply: Fakes, speaker: Speaker
) -> None:
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    uid = await start_reply(client)
    await client.stream_audio(speaker.say("Wait, stop please.") + silence(600), realtime=False)
    frames = await read_until(client, completes(uid))
    interrupted = of(frames, "utterance_interrupted", uid)
    assert len(interrupted) == 1 and interrupted[0].reason == "speech"
    after = frames[
        frames.index(next(r for r in frames if r.frame.type == "utterance_interrupted")) :
    ]
    assert not of(after, "tts_chunk", uid) and not of(after, "assistant_text", uid)
    assert of(frames, "utterance_complete", uid)[0].status == "interrupted"
    assert interrupted[0].sent_ms < 7000  # paced: far from the whole reply was sent
    async with httpx.AsyncClient() as http:  # counted, and priced for what was produced
        metrics = (await http.get(f"{srv.base}/metrics")).json()
        prom = (await http.get(f"{srv.base}/metrics/prometheus")).text
    assert metrics["interruptions"] == {"speech": 1}
    assert re.search(
        r'^voicewire_interruptions_total\{reason="speech",worker="[^"]+"\} 1\.0$', prom, re.M
    )
    assert of(frames, "cost_update", uid) and metrics["turns"]["interrupted"] == 1
    # the speech is the next turn, answered (all of it, even a first word too short to
    # interrupt on its own)
    turn = await read_until(
        client, lambda r: r.frame.type == "utterance_complete" and r.frame.status == "completed"
    )
    stt = of(frames + turn, "stt_start")
    assert len(stt) == 1 and stt[0].audio_ms >= len(speaker.say("Wait, stop please.")) / 32 - 50
    await client.close()


async def test_short_sounds_do_not_interrupt_and_are_not_turns(
    fake_server: Make, long_reply: Fakes
) -> None:
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    uid = await start_reply(client)
    rng = np.random.default_rng(3)
    burst = (rng.normal(0, 6000, 16 * 150)).clip(-32768, 32767).astype(np.int16).tobytes()
    await client.stream_audio(burst + silence(500), realtime=False)  # a 150 ms door slam
    frames = await read_until(client, completes(uid))
    assert not of(frames, "utterance_interrupted")
    assert of(frames, "utterance_complete", uid)[0].status == "completed"
    for done in of(frames, "utterance_complete"):  # if the VAD took it for speech: ignored
        assert done.utterance_id == uid or done.status == "ignored"
    await client.close()


async def test_a_playback_report_cuts_the_history_to_what_was_heard(
    fake_server: Make, long_reply: Fakes
) -> None:
    srv = fake_server(audio_lead_ms=0)  # the whole reply is sent at once
    client = await Client.connect(srv.ws_url)
    result = await client.ask("talk to me")
    uid = result.utterance_id
    texts = result.of_type("assistant_text")
    second = texts[1]
    cut_at = second.offset_ms + 1  # type: ignore[attr-defined]
    await client.send_json({"type": "playback", "utterance_id": uid, "played_ms": cut_at})
    heard = await client.expect("reply_heard")
    assert heard.text == texts[0].text  # type: ignore[attr-defined]
    async with httpx.AsyncClient() as http:
        history = (await http.get(f"{srv.base}/session/{client.session_id}")).json()
    assert history["history"][-1]["content"] == texts[0].text.rstrip(".") + "…"  # type: ignore[attr-defined]
    assert history["utterances"][-1]["heard"] == heard.text  # type: ignore[attr-defined]
    await client.close()


class HangArgs(BaseModel):
    pass


async def test_interrupt_during_a_tool_call_cancels_it_and_leaves_a_valid_history(
    fakes: Fakes,
) -> None:
    cancelled = threading.Event()

    async def slow(_: HangArgs) -> ToolOutput:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return ToolOutput({})

    call = ToolCallRequest("c1", "slow", {})
    fakes.llm.steps = [FakeLLMStep("Let me look.", tool_calls=[call]), FakeLLMStep("Sure.")]
    settings = Settings(warmup=False, ledger=False)
    app = create_app(
        settings, fakes.providers, tools=ToolRegistry([Tool("slow", "s", HangArgs, slow)])
    )
    srv = serve(app, settings)
    try:
        client = await Client.connect(srv.ws_url)
        await client.send_json({"type": "user_text", "text": "look it up"})
        uid = (await client.expect("ack")).utterance_id
        await client.expect("tool_call_start")
        await client.send_json({"type": "interrupt"})
        frames = await read_until(client, completes(uid))
        assert of(frames, "utterance_complete", uid)[0].status == "interrupted"
        assert cancelled.wait(10)
        follow_up = await client.ask("never mind")
        assert follow_up.status == "completed"
        messages = fakes.llm.calls[-1][0]
        called = {c["id"] for m in messages for c in m.get("tool_calls") or []}
        answered = {m["tool_call_id"] for m in messages if m["role"] == "tool"}
        assert called == answered  # no call without its result
        assert {"role": "assistant", "content": "Let me look."} in messages  # it was heard
        await client.close()
    finally:
        srv.stop()


async def test_interrupt_during_the_transcription_of_the_last_turn(fake_server: Make) -> None:
    srv = fake_server()
    srv.app.state.runtime.providers.stt.latency_s = 30
    client = await Client.connect(srv.ws_url)
    await client.send_json({"type": "session_update", "turn_detection": "manual"})
    await client.expect("ack")
    await client.stream_audio(silence(400), realtime=False)
    await client.send_json({"type": "audio_commit"})
    uid = (await client.expect("ack")).utterance_id
    await client.expect("stt_start")
    await client.send_json({"type": "interrupt"})
    frames = await read_until(client, completes(uid), timeout=10)
    assert of(frames, "utterance_complete", uid)[0].status == "interrupted"
    assert not of(frames, "llm_start")
    await client.close()


async def test_a_cancel_racing_an_interrupt_ends_the_utterance_once(
    fake_server: Make, fakes: Fakes
) -> None:
    fakes.llm.steps = [FakeLLMStep("never ends", hang_after_tokens=1)]
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    await client.send_json({"type": "user_text", "text": "hang"})
    uid = (await client.expect("ack")).utterance_id
    await client.expect("llm_streaming")
    await client.send_json({"type": "cancel", "utterance_id": uid})
    await client.send_json({"type": "interrupt"})
    await client.send_json({"type": "ping", "ref": "after"})
    frames = await read_until(client, lambda r: r.frame.type == "pong")
    frames += (
        await read_until(client, completes(uid)) if not of(frames, "utterance_complete") else []
    )
    assert len(of(frames, "utterance_complete", uid)) == 1
    assert of(frames, "utterance_complete", uid)[0].status in ("cancelled", "interrupted")
    assert not [e for e in of(frames, "error") if e.code == "internal"]
    await client.close()


def server_tasks(srv: RunningServer) -> int:
    loop = srv.app.state.runtime.loop

    async def count() -> int:
        return len(asyncio.all_tasks()) - 1  # not this one

    return asyncio.run_coroutine_threadsafe(count(), loop).result(5)


async def test_no_task_survives_an_interruption_or_a_disconnect(
    fake_server: Make, long_reply: Fakes
) -> None:
    srv = fake_server()
    idle = await Client.connect(srv.ws_url)  # the server is up; its idle tasks are running
    before = server_tasks(srv)
    client = await Client.connect(srv.ws_url)
    uid = await start_reply(client)
    await client.send_json({"type": "interrupt"})
    await read_until(client, completes(uid))
    await start_reply(client)  # a second reply, left running
    await client.close()
    runtime = srv.app.state.runtime
    deadline = time.monotonic() + 10
    while len(runtime.connections) > 1 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)  # the server notices the close on its own loop
    assert list(runtime.connections) == [idle.session_id]
    # the connection's own task and the accounting of its cut turn end just after it goes
    while server_tasks(srv) > before and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    assert server_tasks(srv) <= before
    await idle.close()


# ------------------------------------------------------------------ echo


def piper_server(llm: FakeLLM) -> RunningServer:
    from voicewire.providers.local.piper import PiperTTS
    from voicewire.providers.runner import ModelRunner

    providers = Providers(stt=FakeSTT(), llm=llm, tts=PiperTTS(ModelRunner(1)))
    settings = Settings(warmup=False, ledger=False)
    return serve(create_app(settings, providers), settings)


async def loudspeaker_and_microphone(
    client: Client, uid: str, echo_gain: float, user: bytes | None, user_at_ms: float
) -> list[Received]:
    """Play the reply in real time as a client would, feed ``echo_gain`` of it back into the
    microphone, with ``user`` speech on top from ``user_at_ms`` of playout; return the
    frames received until the reply's utterance completes."""
    echo = np.zeros(16000 * 30, dtype=np.float32)  # the reply as the microphone hears it
    frames: list[Received] = []
    start: float | None = None
    sent = 0
    step = 320  # 20 ms at 16 kHz
    voice = np.frombuffer(user, dtype=np.int16).astype(np.float32) if user else None
    at = int(user_at_ms * 16)
    while True:
        try:
            received = await client.next_frame(0.005)
        except TimeoutError:
            received = None
        if received is not None:
            frames.append(received)
            if received.frame.type == "tts_chunk" and received.frame.utterance_id == uid:
                head: Any = received.frame
                start = start or time.perf_counter()
                pcm = resample_pcm16(received.audio, head.sample_rate, 16000)
                samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) * echo_gain
                i = int(head.offset_ms * 16)
                echo[i : i + samples.size] += samples[: echo.size - i]
            if completes(uid)(received):
                return frames
        if start is None:
            continue
        due = int((time.perf_counter() - start) * 16000)  # the playout clock
        while sent + step <= min(due, echo.size):
            mic = echo[sent : sent + step].copy()
            if voice is not None and sent + step > at and sent < at + voice.size:
                lo = max(sent, at)
                mic[lo - sent : min(sent + step, at + voice.size) - sent] += voice[
                    lo - at : min(sent + step, at + voice.size) - at
                ]
            await client.ws.send(mic.clip(-32768, 32767).astype(np.int16).tobytes())
            sent += step


async def test_echo_of_the_agent_does_not_interrupt_it_but_the_user_does(
    speaker: Speaker,
) -> None:
    llm = FakeLLM([FakeLLMStep("Here is a fairly long answer. " * 3 + "It goes on a bit more.")])
    srv = piper_server(llm)
    try:
        client = await Client.connect(srv.ws_url)
        await client.send_json({"type": "user_text", "text": "talk"})
        uid = (await client.expect("ack")).utterance_id
        frames = await loudspeaker_and_microphone(client, uid, 0.1, None, 0)  # -20 dB echo
        assert not of(frames, "utterance_interrupted")
        assert of(frames, "utterance_complete", uid)[0].status == "completed"
        await client.send_json({"type": "user_text", "text": "again"})
        uid = (await client.expect("ack")).utterance_id
        user = speaker.say("No, stop, tell me about something else.")
        frames = await loudspeaker_and_microphone(client, uid, 0.1, user, 1000)
        assert [f.reason for f in of(frames, "utterance_interrupted", uid)] == ["speech"]
        await client.close()
    finally:
        srv.stop()


async def test_interrupt_mid_second_sentence_remembers_exactly_what_was_heard(
    fake_server: Make, long_reply: Fakes
) -> None:
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    await client.send_json({"type": "user_text", "text": "talk to me"})
    uid = (await client.expect("ack")).utterance_id
    frames = await read_until(client, lambda r: r.frame.type == "assistant_text")
    second: Any = await client.expect("assistant_text")  # sentence 2 is on its way
    words = second.text.split()
    # the client played sentence 1 and half of sentence 2's audio (15 ms per character)
    half = second.offset_ms + len(second.text) * 15 / 2
    await client.send_json({"type": "interrupt"})
    await client.send_json({"type": "playback", "utterance_id": uid, "played_ms": half})
    frames += await read_until(client, completes(uid))
    cut = next(i for i, r in enumerate(frames) if r.frame.type == "utterance_interrupted")
    assert not of(frames[cut:], "tts_chunk", uid)  # audio frames stop
    heard = [r for r in frames if r.frame.type == "reply_heard"]
    first = of(frames, "assistant_text", uid)[0].text
    expected = first + " " + " ".join(words[: len(words) // 2])
    if heard[-1].frame.played_ms != round(half, 1):  # the report may come after the unwind
        heard += await read_until(client, lambda r: r.frame.type == "reply_heard", 10)
    assert heard[-1].frame.text == expected
    follow_up = await client.ask("and then?")
    assert follow_up.status == "completed"
    history = long_reply.llm.calls[-1][0]
    assert history[-2] == {"role": "assistant", "content": expected.rstrip(".,") + "…"}
    await client.close()


async def test_only_clients_that_report_playback_can_interrupt_a_finished_reply(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    """A 1.0 client (no playback reports): utterance_complete stays the last frame of an
    utterance. A client that reports playback can still talk over a reply it is playing."""
    fakes.llm.steps = [FakeLLMStep("A reply of a second or so.")]
    fakes.tts.ms_per_char = 60  # about 1.6 s of audio: all sent at once, inside the lead
    srv = fake_server()
    speech = speaker.say("Hello, can you hear me?") + silence(600)
    for reports in (False, True):
        client = await Client.connect(srv.ws_url)
        if reports:
            await client.send_json({"type": "session_update", "reports_playback": True})
            await client.expect("ack")
        first = await client.ask("hi")  # complete: sent in full, still "playing"
        await client.stream_audio(speech, realtime=False)
        uid = first.utterance_id
        next_turn_done = lambda r, uid=uid: (  # noqa: E731
            r.frame.type == "utterance_complete" and r.frame.utterance_id != uid
        )
        frames = await read_until(client, next_turn_done)
        late = of(frames, "utterance_interrupted", uid)
        assert len(late) == (1 if reports else 0), reports
        await client.close()


async def test_speech_sent_in_one_frame_still_interrupts(
    fake_server: Make, long_reply: Fakes, speaker: Speaker
) -> None:
    """A recording sent whole (or a burst after a network stall) is heard as it would have
    been in real time: the speech takes the floor before its own end of turn is reached."""
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    uid = await start_reply(client)
    speech = speaker.say("Wait, stop please.") + silence(800)
    await client.stream_audio(speech, chunk_ms=len(speech) // 32, realtime=False)  # one frame
    frames = await read_until(client, completes(uid))
    assert of(frames, "utterance_complete", uid)[0].status == "interrupted"
    assert of(frames, "utterance_interrupted", uid)[0].reason == "speech"
    await client.close()
