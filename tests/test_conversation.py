"""The conversation core without a transport: a recording emitter, scripted fakes, no uvicorn.

Also the pure parts of barge-in: what was heard at a playout position, cutting a turn's
messages to it, and the speech run that decides an interruption.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from tests.test_turn import Recorder
from voicewire.conversation import Conversation, ConversationConfig, Deps
from voicewire.conversation.replies import ReplyLog, chunk_levels, truncate_messages
from voicewire.pipeline.endpointing import SpeechRun
from voicewire.pipeline.turn_types import NoTools, TurnConfig
from voicewire.protocol import CostUpdate
from voicewire.providers.base import Providers
from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT, FakeTTS
from voicewire.session import Session

THREE = "The first sentence is here. The second one has eight words in it. A third one ends it."


# ------------------------------------------------------------------ pure parts


def reply_log() -> ReplyLog:
    log = ReplyLog()
    log.add_sentence("The first sentence is here.", 0.0)
    log.add_sentence("The second one has eight words in it.", 1000.0)
    log.add_sentence("A third one ends it.", 2000.0)
    log.add_audio(0.0, 2600.0, [(0.0, 1000.0)], now=0.0)
    return log


@pytest.mark.parametrize(
    "played, heard",
    [
        (0.0, ""),
        (999.0, "The first sentence is"),  # 4 of 5 words by the proportional estimate
        (1000.0, "The first sentence is here."),
        (1500.0, "The first sentence is here. The second one has"),
        (2600.0, THREE),
    ],
)
def test_heard_text_follows_the_playout_position(played: float, heard: str) -> None:
    assert reply_log().heard_text(played) == heard


def test_a_long_chunk_keeps_the_level_of_its_loud_word() -> None:
    """Later audio chunks are up to 400 ms: the echo floor must still see a loud word in one,
    not its average with the pauses around it."""
    rate = 16_000
    quiet, loud = b"\x00\x00" * (3 * rate // 10), np.full(rate // 10, 8000, "<i2").tobytes()
    levels = chunk_levels(quiet + loud, rate, offset_ms=1000.0)
    assert [at for at, _ in levels] == [1000.0, 1100.0, 1200.0, 1300.0]
    assert levels[-1][1] == pytest.approx(8000.0) and levels[0][1] == 0.0
    log = ReplyLog()
    log.add_audio(1000.0, 400.0, levels, now=0.0)
    assert log.level_near(1000.0, before_ms=0, after_ms=350) == pytest.approx(8000.0)


def test_sentences_without_audio_count_once_the_reply_reaches_them() -> None:
    log = ReplyLog()
    log.add_sentence("Spoken.", 0.0)
    log.add_audio(0.0, 500.0, [(0.0, 1000.0)], now=0.0)
    log.add_sentence("Shown as text after the TTS failed.", None)
    assert log.heard_text(600.0) == "Spoken. Shown as text after the TTS failed."
    assert log.heard_text(0.0) == ""


def test_messages_are_cut_to_the_heard_words_and_tool_calls_stay() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "chart it"},
        {"role": "assistant", "content": "Let me draw that.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "{}"},
        {"role": "assistant", "content": "Here it is. February is highest."},
    ]
    cut = truncate_messages(messages, "Let me draw that. Here it")
    assert cut[:3] == messages[:3]
    assert cut[3]["content"] == "Here it…"
    early = truncate_messages(messages, "Let me")
    assert early[1] == {**messages[1], "content": "Let me…"}  # the call ran: it stays
    assert early[2] == messages[2] and len(early) == 3  # the unheard words are gone
    assert truncate_messages(messages, "Let me draw that. Here it is. February is highest.") == (
        messages
    )


def test_a_speech_run_survives_word_gaps_not_pauses() -> None:
    run = SpeechRun(max_gap_ms=100)
    for _ in range(5):
        run.update(True, 20)
    for _ in range(4):  # 80 ms between words
        run.update(False, 20)
    assert run.update(True, 20) == 120
    for _ in range(6):  # 120 ms: a pause
        run.update(False, 20)
    assert run.update(True, 20) == 20


# ------------------------------------------------------------------ the core


class Watched(Recorder):
    """A Recorder whose waiters wake on every frame."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    async def send(self, frame: Any) -> None:
        await super().send(frame)
        self.changed.set()


class Harness:
    """A conversation on fakes, recording what it emits, the turns and the counters."""

    def __init__(self, llm: FakeLLM, tts: FakeTTS | None = None, **config: Any) -> None:
        self.providers = Providers(stt=FakeSTT(), llm=llm, tts=tts or FakeTTS())
        self.session = Session("server_vad", 300, 10)
        self.out = Watched()
        self.counts: list[tuple[str, ...]] = []
        self.turns: list[str] = []
        config.setdefault("audio_lead_ms", 0)
        self.deps = Deps(
            providers=lambda: self.providers,
            tools=NoTools(),
            turn_config=TurnConfig(),
            config=ConversationConfig(**config),
            promote=lambda owner: None,
            take_discarded=lambda owner: 0.0,
            account=self._account,
            account_later=lambda *a: None,
            record_turn=lambda status, timings: self.turns.append(status),
            count=lambda *key: self.counts.append(key),
        )
        self.conv = Conversation(self.session, self.deps, self.out)

    async def _account(self, session: Session, request: Any, turn: Any) -> CostUpdate:
        return CostUpdate(
            utterance_id=request.record.id,
            utterance={"total_usd": "0"},
            session_total_usd="0",
            session_minutes=0.0,
            usd_per_minute="0",
        )

    async def until(self, kind: str, count: int = 1) -> None:
        """Let the conversation run until it has emitted ``count`` frames of ``kind``."""
        async with asyncio.timeout(10):
            while len(self.out.of(kind)) < count:
                self.out.changed.clear()
                await self.out.changed.wait()


async def test_a_text_turn_runs_and_ends_with_utterance_complete() -> None:
    h = Harness(FakeLLM([FakeLLMStep("Hello there.")]))
    await h.conv.user_text("hi", "r1")
    await h.until("utterance_complete")
    assert h.out.of("ack")[0].ref == "r1"
    assert h.out.of("utterance_complete")[0].status == "completed"
    assert h.session.messages()[-1] == {"role": "assistant", "content": "Hello there."}
    await h.conv.settle()
    assert len(h.conv.tasks) == 0  # the worker ended with the queue
    await h.conv.aclose()


async def test_interrupt_stops_the_turn_and_keeps_what_was_heard() -> None:
    gate = asyncio.Event()  # the LLM stops after two sentences, until released
    llm = FakeLLM(
        [
            FakeLLMStep(THREE, gate=gate, gate_after_tokens=len(THREE.split()) - 4),
            FakeLLMStep("Ok."),
        ]
    )
    h = Harness(llm, FakeTTS(ms_per_char=20))
    await h.conv.user_text("talk", None)
    await h.until("assistant_text", 2)  # two sentences sent, the LLM waits at the gate
    uid = h.out.of("ack")[0].utterance_id
    second = h.out.of("assistant_text")[1]
    await h.conv.interrupt("i1")
    await h.conv.playback(uid, second.offset_ms + 200, done=False)  # 200 ms into sentence 2
    await h.until("utterance_complete")
    types = h.out.types()
    after = types[types.index("utterance_interrupted") :]
    assert "tts_chunk" not in after and "assistant_text" not in after
    assert h.out.of("utterance_complete")[0].status == "interrupted"
    assert h.out.of("utterance_interrupted")[0].reason == "client"
    heard = h.out.of("reply_heard")[-1].text
    assert heard.startswith("The first sentence is here. The second") and "third" not in heard
    history = h.session.messages()
    assert history[-1]["content"] == heard.rstrip(".") + "…"
    assert ("interruptions", "client") in h.counts and h.turns == ["interrupted"]
    assert h.session.utterances[uid].heard == heard
    await h.conv.user_text("and then?", None)  # the next question sees the cut reply
    await h.until("utterance_complete", 2)
    assert llm.calls[-1][0][-2]["content"].endswith("…")
    await h.conv.aclose()
    assert len(h.conv.tasks) == 0


async def test_interrupt_with_nothing_playing_only_acks() -> None:
    h = Harness(FakeLLM())
    await h.conv.interrupt("i1")
    assert h.out.types() == ["ack"]
    await h.conv.aclose()


async def test_audio_is_paced_to_the_lead_and_first_audio_is_not_delayed() -> None:
    text = "A sentence of about sixty characters, spoken at ten per char."
    h = Harness(FakeLLM([FakeLLMStep(text * 2)]), FakeTTS(ms_per_char=10), audio_lead_ms=300)
    sent_at: list[tuple[float, float]] = []
    send_audio = h.out.send_audio

    async def timed(header: Any, pcm: bytes) -> None:
        sent_at.append((time.perf_counter(), header.offset_ms))
        await send_audio(header, pcm)

    h.out.send_audio = timed  # type: ignore[method-assign]
    await h.conv.user_text("go", None)
    await h.until("utterance_complete")
    start = sent_at[0][0]
    for at, offset in sent_at:
        assert (at - start) * 1000 >= offset - 300 - 5  # never more than the lead ahead
    assert sent_at[-1][1] > 1000  # over a second of audio: pacing had something to do
    await h.conv.aclose()


async def test_closing_cancels_every_task_and_accounts_nothing_twice() -> None:
    h = Harness(FakeLLM([FakeLLMStep("never ends", hang_after_tokens=1)]))
    await h.conv.user_text("hang", None)
    await h.until("llm_streaming")
    assert len(h.conv.tasks) == 2  # the worker and its turn
    await h.conv.aclose()
    # the running turn was cut by the lost connection: interrupted, and told on resume
    assert len(h.conv.tasks) == 0 and h.turns == ["interrupted"]
    assert h.conv.session.unreported == [h.conv.session.utterances.popitem()[0]]


async def test_a_reply_does_not_wait_for_the_bill_of_the_input_before_it() -> None:
    """A Realtime client commits audio, then asks for a response: the response must not wait
    for the transcription's cost to be committed to the ledger (a disk write)."""
    h = Harness(FakeLLM([FakeLLMStep("Hello.")]))
    ledger_free = asyncio.Event()  # a ledger that never finishes writing

    async def slow_account(session: Session, request: Any, turn: Any) -> CostUpdate:
        await ledger_free.wait()
        return await h._account(session, request, turn)

    later: list[str] = []
    h.deps.account = slow_account
    h.deps.account_later = lambda session, request, turn: later.append(request.record.id)
    assert await h.conv.user_audio(b"\x01\x00" * 16000, None, respond=False, uid="u_in")
    assert await h.conv.respond(None, "u_reply")
    await h.until("tts_chunk")  # the reply speaks while the input's bill is still unwritten
    assert later == ["u_in"]
    assert h.session.messages()[0] == {"role": "user", "content": "hello"}
    ledger_free.set()
    await h.until("utterance_complete", 2)
    await h.conv.aclose()


@pytest.mark.parametrize("window_ms", [0, 30])
async def test_tokens_that_come_together_share_a_frame_in_order(window_ms: int) -> None:
    """A model streaming faster than the window: its deltas share frames (the first goes at
    once), nothing is lost or reordered, and no token frame follows a later frame."""
    words = " ".join(f"w{i}" for i in range(40)) + "."
    h = Harness(FakeLLM([FakeLLMStep(words, token_s=0.002)]), token_window_ms=window_ms)
    await h.conv.user_text("go", None)
    await h.until("utterance_complete")
    tokens = h.out.of("llm_streaming")
    assert "".join(f.delta for f in tokens) == h.out.of("llm_complete")[0].text  # type: ignore[attr-defined]
    if window_ms:
        assert 2 <= len(tokens) <= 20  # 40 tokens in ~80 ms: a few frames, not one each
        assert tokens[0].delta == "w0 "  # type: ignore[attr-defined]  # the first at once
    else:
        assert len(tokens) == 40  # one per token
    kinds = [f.type for f in h.out.frames]
    assert kinds.index("llm_complete") > max(i for i, k in enumerate(kinds) if k == "llm_streaming")
    await h.conv.aclose()


async def test_token_frames_off_is_kept_with_the_session() -> None:
    """A client that shows no tokens says so once; a conversation resumed from the session
    (another connection, another worker) keeps it."""
    h = Harness(FakeLLM([FakeLLMStep("One two three."), FakeLLMStep("Four five six.")]))
    await h.conv.update(None, token_frames=False)
    await h.conv.user_text("go", None)
    await h.until("utterance_complete")
    assert not h.out.of("llm_streaming") and h.out.of("llm_complete")
    await h.conv.aclose()
    again = Conversation(h.session, h.deps, h.out)
    await again.user_text("more", None)
    await h.until("utterance_complete", 2)
    assert not h.out.of("llm_streaming")
    with pytest.raises(TypeError):
        await again.update(None, token_frame=False)  # a misspelt setting is a bug, not ignored
    await again.aclose()
