"""The turn pipeline with scripted fakes: no models, no server, no sleeps."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest

from tests.conftest import check_invariants
from voicewire.pipeline.turn import Turn
from voicewire.pipeline.turn_types import TurnConfig, TurnRequest
from voicewire.protocol import LlmStreaming, ServerFrame, TtsChunk
from voicewire.providers.base import ProviderError, Providers, ToolCallRequest, ToolSpec
from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT, FakeTTS
from voicewire.session import Session, UtteranceRecord
from voicewire.tools import ToolOutput


class Recorder:
    """An Emitter that keeps frames (stamping seq) and can signal the first audio chunk."""

    def __init__(self) -> None:
        self.frames: list[ServerFrame] = []
        self.audio: list[bytes] = []
        self.first_audio = asyncio.Event()

    async def send(self, frame: ServerFrame) -> None:
        frame.seq = len(self.frames) + 1
        self.frames.append(frame)

    async def token(self, utterance_id: str, delta: str) -> None:
        await self.send(LlmStreaming(utterance_id=utterance_id, delta=delta))

    async def send_audio(self, header: TtsChunk, pcm: bytes) -> None:
        await self.send(header)
        self.audio.append(pcm)
        self.first_audio.set()

    def types(self) -> list[str]:
        return [f.type for f in self.frames]

    def of(self, kind: str) -> list[Any]:
        return [f for f in self.frames if f.type == kind]


def make_turn(
    llm: FakeLLM,
    tts: FakeTTS | None = None,
    stt: FakeSTT | None = None,
    audio: bytes | None = None,
    tools: Any = None,
    session: Session | None = None,
    cfg: TurnConfig | None = None,
) -> tuple[Turn, Recorder, Session]:
    rec = Recorder()
    session = session or Session("manual", 300, 10)
    request = TurnRequest(
        UtteranceRecord("u_test", "audio" if audio else "text"),
        time.perf_counter(),
        text=None if audio else "hi",
        audio=audio,
    )
    providers = Providers(stt=stt or FakeSTT(["hi"]), llm=llm, tts=tts or FakeTTS())
    turn = Turn(request, session, providers, rec, cfg or TurnConfig(tts_chunk_ms=20), tools)
    return turn, rec, session


async def test_first_audio_leaves_before_the_llm_finishes() -> None:
    rec_holder: list[Recorder] = []
    gate = asyncio.Event()
    # The LLM writes one sentence, then waits until audio has been sent: a pipeline that
    # waited for the whole reply before speaking would never finish this turn.
    llm = FakeLLM(
        [FakeLLMStep("First sentence here. And a second one.", gate=gate, gate_after_tokens=3)]
    )
    turn, rec, _ = make_turn(llm)
    rec_holder.append(rec)

    async def open_gate() -> None:
        await rec.first_audio.wait()
        gate.set()

    opener = asyncio.create_task(open_gate())
    status = await asyncio.wait_for(turn.run(), 5)
    await opener
    assert status == "completed"
    types = rec.types()
    assert types.index("tts_chunk") < types.index("llm_complete")
    texts = [f.text for f in rec.of("assistant_text")]
    assert texts == ["First sentence here.", "And a second one."]


async def test_frames_are_ordered_and_audio_is_placed_on_the_timeline() -> None:
    tts = FakeTTS(sample_rate=16_000, ms_per_char=10, pieces=3)
    turn, rec, session = make_turn(FakeLLM([FakeLLMStep("One two. Three four five!")]), tts)
    await turn.run()
    rec.frames.append(
        rec.frames[-1].model_copy(update={"type": "utterance_complete", "seq": 10_000})
    )
    check_invariants(rec.frames)
    chunks = rec.of("tts_chunk")
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    # each chunk starts where the previous one ended
    for prev, cur in itertools.pairwise(chunks):
        assert cur.offset_ms == pytest.approx(prev.offset_ms + prev.samples / 16, abs=0.01)
    # the second sentence's text sits exactly where its audio starts
    second = rec.of("assistant_text")[1]
    first_audio_ms = len("One two.") * 10
    assert second.offset_ms == pytest.approx(first_audio_ms, abs=0.1)
    total = sum(len(a) for a in rec.audio) // 2
    assert rec.of("tts_complete")[0].audio_ms == pytest.approx(total / 16, abs=0.01)
    assert all(len(a) % 2 == 0 for a in rec.audio)
    assert session.messages()[-1] == {"role": "assistant", "content": "One two. Three four five!"}
    t = turn.timings
    assert t.ttfa_ms is not None and t.tts_ttfb_ms is not None and t.llm_ttft_ms is not None


async def test_audio_chunks_grow_after_a_small_first_one_and_lose_nothing() -> None:
    # 3.1 s of audio for one sentence, made in 7 uneven pieces
    tts = FakeTTS(sample_rate=16_000, ms_per_char=100, pieces=7)
    text = "Here are thirty one characters."
    cfg = TurnConfig(tts_chunk_ms=100, tts_max_chunk_ms=400)
    turn, rec, _ = make_turn(FakeLLM([FakeLLMStep(text)]), tts, cfg=cfg)
    await turn.run()
    sizes = [len(a) // 32 for a in rec.audio]  # ms at 16 kHz
    # first audio is not held back; each later chunk as long as what was sent, up to 400 ms
    assert sizes[:5] == [100, 100, 200, 400, 400], sizes
    assert all(s <= 400 for s in sizes) and sum(sizes) == 3100
    made = [p async for p in FakeTTS(16_000, 100).synthesize(text) if isinstance(p, bytes)]
    assert b"".join(rec.audio) == b"".join(made)


async def test_stt_failure_degrades_the_utterance() -> None:
    stt = FakeSTT(error=ProviderError("fake:stt", "boom"))
    llm = FakeLLM()
    turn, rec, _ = make_turn(llm, stt=stt, audio=b"\x00\x01" * 1600)
    assert await turn.run() == "failed"
    err = rec.of("error")[0]
    assert (err.code, err.stage) == ("stt_failed", "stt") and "boom" in err.message
    assert "llm_start" not in rec.types() and not llm.calls


async def test_silence_gives_no_speech_not_an_llm_call() -> None:
    llm = FakeLLM()
    turn, rec, _ = make_turn(llm, stt=FakeSTT(["  "]), audio=b"\x00\x00" * 1600)
    assert await turn.run() == "empty"
    assert rec.of("error")[0].code == "no_speech"
    assert rec.types()[:2] == ["stt_start", "stt_complete"] and not llm.calls


async def test_llm_failure_midway_keeps_what_was_said() -> None:
    llm = FakeLLM([FakeLLMStep("It went fine. Then it broke here", fail_after_tokens=4)])
    turn, rec, _session = make_turn(llm)
    assert await turn.run() == "failed"
    assert rec.of("error")[0].code == "llm_failed"
    assert [f.text for f in rec.of("assistant_text")] == ["It went fine.", "Then"]
    assert rec.of("llm_complete")[0].text == "It went fine. Then"
    assert rec.of("tts_chunk"), "the part that was said is still spoken"


async def test_tts_failure_gives_a_text_only_reply() -> None:
    tts = FakeTTS(fail_on_call=1)
    turn, rec, _ = make_turn(FakeLLM([FakeLLMStep("Hello there. Still here.")]), tts)
    assert await turn.run() == "failed"
    err = rec.of("error")[0]
    assert (err.code, err.stage) == ("tts_failed", "tts")
    texts = rec.of("assistant_text")
    assert [t.text for t in texts] == ["Hello there.", "Still here."]
    assert all(t.offset_ms is None for t in texts) and not rec.of("tts_chunk")


class TwoTools:
    """A slow tool and a fast one: the fast one finishes first."""

    def __init__(self) -> None:
        self.slow_release = asyncio.Event()
        self.finished: list[str] = []

    def specs(self) -> list[ToolSpec]:
        return [
            ToolSpec("slow", "slow", {"type": "object"}),
            ToolSpec("fast", "fast", {"type": "object"}),
        ]

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        if name == "slow":
            await self.slow_release.wait()
        else:
            self.slow_release.set()  # the slow one can only end after the fast one
        self.finished.append(name)
        return ToolOutput({"tool": name, **arguments})


async def test_tool_results_return_in_call_order_after_one_barrier() -> None:
    calls = [ToolCallRequest("c1", "slow", {"x": 1}), ToolCallRequest("c2", "fast", {"y": 2})]
    llm = FakeLLM([FakeLLMStep("Let me check. ", tool_calls=calls), FakeLLMStep("Done.")])
    tools = TwoTools()
    turn, rec, _ = make_turn(llm, tools=tools)
    assert await turn.run() == "completed"
    assert tools.finished == ["fast", "slow"]
    second_messages = llm.calls[1][0]
    tool_msgs = [m for m in second_messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["c1", "c2"]
    assert json.loads(tool_msgs[0]["content"]) == {"tool": "slow", "x": 1}
    assistant = next(m for m in second_messages if m.get("tool_calls"))
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    done = rec.of("tool_call_complete")
    assert [d.call_id for d in done] == ["c2", "c1"] and all(d.error is None for d in done)
    assert rec.of("llm_complete")[0].text == "Let me check. Done."


async def test_cancel_stops_every_task_of_the_turn() -> None:
    llm = FakeLLM([FakeLLMStep("Speaking now. And then forever", hang_after_tokens=3)])
    turn, rec, _ = make_turn(llm)
    before = asyncio.all_tasks()
    task = asyncio.create_task(turn.run())
    await rec.first_audio.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert llm.cancelled.is_set()
    assert asyncio.all_tasks() == before, "the speaker task outlived its turn"


async def test_the_tts_hears_words_not_markup_and_the_text_keeps_it() -> None:
    tts = FakeTTS()
    reply = "1. **Boil** the water. **"
    turn, rec, _ = make_turn(FakeLLM([FakeLLMStep(reply)]), tts)
    assert await turn.run() == "completed"
    assert tts.calls == ["Boil the water."]  # the lone "**" is not synthesized at all
    assert [f.text for f in rec.of("assistant_text")] == ["1. **Boil** the water.", "**"]
