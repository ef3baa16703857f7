"""One conversation's state machine, with no transport in it.

It owns the microphone input and its endpointing, speculative transcription, the utterance
queue, the running turn, cancellation and barge-in, every task of the session (a ``TaskSet``),
and the utterance records and history. Adapters (``server/connection.py`` for
``/ws/multimodal``; others for other wire protocols) decode client input into the calls below
and hand the core an ``Emitter``: the core emits the protocol's frame models as its events,
each adapter serializes them (``/ws/multimodal`` as they are, another protocol by mapping).

Two parts live in their own modules, as this class's bases: the microphone's path from audio
to turns (``mic.py``), and barge-in (``barge_in.py``): user speech over a reply stops it at once
and the history keeps only what was heard. Audio is paced: at most ``audio_lead_ms`` ahead of
the client's playout, so an interruption wastes little synthesis and the client has little
to flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from voicewire.conversation.barge_in import BargeIn
from voicewire.conversation.coalesce import TokenCoalescer
from voicewire.conversation.mic import MicInput
from voicewire.conversation.replies import Replies, chunk_levels
from voicewire.conversation.speculation import Speculation
from voicewire.conversation.tasks import TaskSet
from voicewire.pipeline.audio_input import AudioInput
from voicewire.pipeline.turn import Turn
from voicewire.pipeline.turn_types import Emitter, ReplyOptions, Tools, TurnConfig, TurnRequest
from voicewire.protocol import (
    INPUT_SAMPLE_RATE,
    Ack,
    AssistantText,
    CostUpdate,
    Error,
    ErrorCode,
    LlmStreaming,
    MetricsUpdate,
    ProviderFallback,
    RateLimits,
    ServerFrame,
    StageTimings,
    TokenCounts,
    TtsChunk,
    UtteranceCancelled,
    UtteranceComplete,
)
from voicewire.providers.base import Message, Providers, Usage
from voicewire.providers.runner import model_owner
from voicewire.session import Session, UtteranceRecord, new_id

log = logging.getLogger(__name__)
# what a client may set for its session (session_update), kept in session.settings
SETTINGS = ("barge_in", "reports_playback", "max_silence_ms", "token_frames")


@dataclass(slots=True)
class ConversationConfig:
    max_text_chars: int = 4000
    max_audio_s: float = 60.0
    max_queued_utterances: int = 8
    vad: str = "silero"  # or "webrtc"
    vad_aggressiveness: int = 2
    vad_min_speech_ms: int = 120
    vad_energy_floor: float = 150.0
    vad_noise_ratio: float = 1.5  # speech stands this far above the room's noise (RMS)
    speculative_stt_ms: int = 120
    max_silence_ms: int = 1200  # for a turn whose words sound unfinished (turn_end.py)
    barge_in: bool = True
    interrupt_min_speech_ms: int = 200
    audio_lead_ms: int = 1500  # 0: send audio as fast as it is made
    echo_energy_floor: float = 600.0  # the VAD's floor while the agent's audio plays
    echo_level_ratio: float = 0.15  # ... or this share of the agent's own level, if higher
    token_window_ms: int = 30  # token deltas this close together share a frame (0: each alone)
    mic_stall_ms: int = 2000  # no audio this long mid-turn: heard as silence (mic.py; 0: off)


@dataclass(slots=True)
class Deps:
    """What a conversation needs from the process, and nothing more (built in ``app.py``)."""

    providers: Callable[[], Providers]
    tools: Tools
    turn_config: TurnConfig
    config: ConversationConfig
    promote: Callable[[str], None]  # the model runner: this session's speculation is wanted
    take_discarded: Callable[[str], float]  # CPU s of this session's superseded speculations
    account: Callable[[Session, TurnRequest, Turn], Awaitable[CostUpdate]]
    account_later: Callable[[Session, TurnRequest, Turn], None]
    record_turn: Callable[[str, StageTimings], None]
    # ("errors", code), ("fallbacks", stage, failed provider), ("interruptions", why)
    count: Callable[..., None]
    # the session's API key may start a turn with this much audio (s): None, or why not
    admit_turn: Callable[[Session, float], Awaitable[str | None]] = lambda s, a: _nothing()
    # where the session's key stands against its limits, when due (None: nothing to say now)
    rate_limits: Callable[[Session], Awaitable[RateLimits | None]] = lambda s: _nothing()
    # the session's store: write its state out (awaited before an utterance is acknowledged
    # and before it is reported complete, so what the client saw survives its worker), or soon
    save: Callable[[Session], Awaitable[None]] = lambda session: _nothing()
    save_soon: Callable[[Session], None] = lambda session: None


async def _nothing() -> None:
    return None


class Conversation(BargeIn, MicInput):
    def __init__(self, session: Session, deps: Deps, out: Emitter) -> None:
        self.session = session
        self.deps = deps
        self.cfg = deps.config
        self.out = out
        self.barge_in = self.cfg.barge_in
        self.reports_playback = False  # the client plays replies and says how far it got
        self.max_silence_ms = self.cfg.max_silence_ms
        self.token_frames = True  # False: no llm_streaming (the client does not show tokens)
        self.options = ReplyOptions()  # how replies are made (instructions, client tools...)
        self.auto_respond = True  # a turn the VAD ends is answered (else it only joins history)
        self.tasks = TaskSet(session.id)
        self._queue: list[TurnRequest] = []  # short: a list is lighter than a deque
        self._worker: asyncio.Task[None] | None = None
        self._running: tuple[TurnRequest, asyncio.Task[str]] | None = None
        self._interrupted: dict[str, str] = {}  # utterance id -> why, for the running turn
        self._replies = Replies()  # recent replies: for pacing, playback reports, echo
        self._audio: AudioInput | None = None
        self._audio_uid: str | None = None  # utterance the incoming audio belongs to
        self._speculation = Speculation(
            self.tasks, lambda: deps.providers().stt, lambda: deps.promote(session.id)
        )
        self._took_floor = False  # the speech being collected interrupted a reply
        self._held_back: tuple[bytes, float] | None = None  # speech too short to interrupt
        self._mic_lock: asyncio.Lock | None = None  # with the first audio (mic.py)
        self._stall: asyncio.TimerHandle | None = None
        self._last_audio_at = 0.0
        self._tokens = TokenCoalescer(
            self.out.send, self.tasks, self.cfg.token_window_ms / 1000
        )  # after self.tasks
        self._apply(session.settings)  # a resumed session keeps what the client set

    def _apply(self, settings: dict[str, Any]) -> None:
        for name in SETTINGS:
            if settings.get(name) is not None:
                setattr(self, name, settings[name])

    # ------------------------------------------------------------------ events out

    async def token(self, utterance_id: str, delta: str) -> None:
        """A reply's text as it is written: in ``llm_streaming`` frames, if the client wants
        them, deltas that come close together sharing one (coalesce.py)."""
        if not self.token_frames:
            return
        if self._tokens.window_s > 0:
            await self._tokens.add(utterance_id, delta)
        else:
            await self.out.send(LlmStreaming(utterance_id=utterance_id, delta=delta))

    async def send(self, frame: ServerFrame) -> None:
        await self._tokens.flush()  # tokens waiting go first: frame order never changes
        if isinstance(frame, Error):
            self.deps.count("errors", frame.code.value)
        elif isinstance(frame, ProviderFallback):
            self.deps.count("fallbacks", frame.stage, frame.failed)
        elif isinstance(frame, AssistantText) and frame.utterance_id:
            self._replies.of(frame.utterance_id).add_sentence(frame.text, frame.offset_ms)
        await self.out.send(frame)

    async def send_audio(self, header: TtsChunk, pcm: bytes) -> None:
        """Send a reply's audio, paced: never more than ``audio_lead_ms`` ahead of playout."""
        uid = header.utterance_id or ""
        reply = self._replies.of(uid)
        lead = self.cfg.audio_lead_ms
        if lead and reply.started_at is not None:
            due = reply.started_at + (header.offset_ms - lead) / 1000
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
        duration = header.samples * 1000 / header.sample_rate
        # for the echo floor: mic sessions only
        levels = (
            chunk_levels(pcm, header.sample_rate, header.offset_ms)
            if self._audio is not None
            else []
        )
        reply.add_audio(header.offset_ms, duration, levels, time.perf_counter())
        await self._tokens.flush()
        await self.out.send_audio(header, pcm)

    async def error(
        self, code: ErrorCode, message: str, ref: str | None = None, uid: str | None = None
    ) -> None:
        await self.send(Error(code=code, message=message, ref=ref, utterance_id=uid))

    # ------------------------------------------------------------------ requests

    async def user_text(self, text: str, ref: str | None) -> None:
        text = text.strip()
        limit = self.cfg.max_text_chars
        if not text:
            await self.error(ErrorCode.INVALID_FRAME, "text is empty", ref)
        elif len(text) > limit:
            message = f"text has {len(text)} characters; limit {limit}"
            await self.error(ErrorCode.TEXT_TOO_LONG, message, ref)
        else:
            record = UtteranceRecord(new_id("u"), "text")
            request = TurnRequest(record, time.perf_counter(), text=text, options=self.options)
            await self._submit(request, "user_text", ref)

    async def user_audio(
        self, pcm: bytes, ref: str | None, respond: bool = True, uid: str | None = None
    ) -> bool:
        """A one-shot clip, already decoded to 16 kHz PCM by the adapter; ``uid``: the id the
        adapter chose for it (so it knows the id before the turn's first event)."""
        if not await self._within_duration(len(pcm), ref):
            return False
        record = UtteranceRecord(uid or new_id("u"), "audio")
        request = TurnRequest(
            record, time.perf_counter(), audio=pcm, respond=respond, options=self.options
        )
        return await self._submit(request, "user_audio", ref)

    async def add(self, messages: list[Message], ref: str | None, uid: str) -> bool:
        """Messages the client puts in the conversation (in turn order: after what runs and
        waits), with no reply, filed under utterance ``uid``."""
        if not self.busy():  # nothing to wait for: no turn to run
            self.session.add_turn(messages, uid)
            return True
        record = UtteranceRecord(uid, "text")
        request = TurnRequest(record, time.perf_counter(), respond=False, add=messages)
        return await self._submit(request, "add", ref)

    async def respond(self, ref: str | None, uid: str, options: ReplyOptions | None = None) -> bool:
        """Answer the conversation as it stands, with no new input, as utterance ``uid``."""
        record = UtteranceRecord(uid, "text")
        request = TurnRequest(record, time.perf_counter(), options=options or self.options)
        return await self._submit(request, "respond", ref)

    def responding(self) -> bool:
        """A reply is being made or waits to be."""
        running = self._running is not None and self._running[0].respond
        return running or any(r.respond for r in self._queue)

    def clear_input(self) -> None:
        """Forget the microphone audio not yet committed (and what was guessed from it)."""
        if self._audio is not None:
            self._audio.take()
        self._audio_uid = None
        self._speculation.drop()

    async def commit(self, ref: str | None, respond: bool = True) -> None:
        audio = self._audio.take() if self._audio else b""
        uid, self._audio_uid = self._audio_uid, None
        speculation = self._speculation.hand_over()
        if not audio or uid is None:
            if speculation is not None:
                speculation.cancel()
            await self.error(ErrorCode.NO_AUDIO, "no audio was streamed since the last commit", ref)
            return
        record = UtteranceRecord(uid, "audio")
        request = TurnRequest(
            record,
            time.perf_counter(),
            audio=audio,
            speculative=speculation,
            respond=respond,
            options=self.options,
        )
        await self._submit(request, "audio_commit", ref)

    async def update(
        self,
        ref: str | None,
        turn_detection: str | None = None,
        silence_ms: int | None = None,
        **changed: Any,
    ) -> None:
        """Change how the session takes turns; ``changed``: settings kept with the session
        (``SETTINGS``), None for those left as they are."""
        if unknown := set(changed) - set(SETTINGS):
            raise TypeError(f"not a session setting: {', '.join(sorted(unknown))}")
        if turn_detection is not None:
            self.session.turn_detection = turn_detection
        if silence_ms is not None:
            self.session.silence_ms = silence_ms
        self.session.settings.update({k: v for k, v in changed.items() if v is not None})
        self._apply(self.session.settings)
        self.deps.save_soon(self.session)
        if self._audio is not None:
            vad_ends = self.session.turn_detection == "server_vad"
            self._audio.set_mode(vad_ends, self.session.silence_ms, self._semantic_ms())
        await self.send(Ack(request="session_update", ref=ref))

    async def cancel(self, uid: str, ref: str | None) -> None:
        await self.send(Ack(request="cancel", utterance_id=uid, ref=ref))
        if self._running and self._running[0].record.id == uid:
            self._running[1].cancel()  # the worker reports it when the turn has unwound
            return
        for request in self._queue:
            if request.record.id == uid:
                self._queue.remove(request)
                _discard(request)
                await self._report(uid, "cancelled", None)
                return
        if uid == self._audio_uid and self._audio is not None:  # the user is still talking
            self._audio.take()
            self._audio_uid = None
            self._speculation.drop()
            await self._report(uid, "cancelled", None)
            return
        message = f"no queued or running utterance {uid!r}"
        await self.error(ErrorCode.UNKNOWN_UTTERANCE, message, ref, uid)

    # ------------------------------------------------------------------ microphone audio

    # ------------------------------------------------------------------ utterance queue

    async def _within_duration(
        self, pcm_bytes: int, ref: str | None, uid: str | None = None
    ) -> bool:
        seconds = pcm_bytes / 2 / INPUT_SAMPLE_RATE
        limit = self.cfg.max_audio_s
        if seconds <= limit:
            return True
        message = f"audio of {seconds:.1f} s exceeds the limit of {limit:g} s"
        await self.error(ErrorCode.AUDIO_TOO_LONG, message, ref, uid)
        return False

    async def _submit(self, request: TurnRequest, ack_for: str | None, ref: str | None) -> bool:
        uid = request.record.id
        self._took_floor = False  # the next speech must take the floor anew
        depth = len(self._queue) + (1 if self._running else 0)
        if depth >= self.cfg.max_queued_utterances:
            _discard(request)  # its turn will not run
            await self.error(ErrorCode.BUSY, f"{depth} utterances are already waiting", ref, uid)
            return False
        audio_s = len(request.audio or b"") / (2 * INPUT_SAMPLE_RATE)
        if (refused := await self.deps.admit_turn(self.session, audio_s)) is not None:
            _discard(request)
            await self.error(ErrorCode.RATE_LIMITED, refused, ref, uid)
            return False
        self.session.record(request.record)
        # written before the client hears of it: a client that resumes on another worker at
        # once (before this one noticed it left) is told how the utterance ended
        await self.deps.save(self.session)
        if ack_for is not None:
            await self.send(Ack(request=ack_for, utterance_id=uid, ref=ref))
        if (limits := await self.deps.rate_limits(self.session)) is not None:
            await self.send(limits)
        self._queue.append(request)
        if self._worker is None or self._worker.done():
            self._worker = self.tasks.create(self._drain(), "turns")
        return True

    async def _drain(self) -> None:
        model_owner.set(self.session.id)
        while self._queue:
            request = self._queue.pop(0)
            uid = request.record.id
            turn = Turn(
                request,
                self.session,
                self.deps.providers(),
                self,
                self.deps.turn_config,
                self.deps.tools,
            )
            task = self.tasks.create(turn.run(), f"turn-{uid}", expected_failures=True)
            self._running = (request, task)
            try:
                status = await task
            except asyncio.CancelledError:
                status = self._unwound(request, turn)
                me = asyncio.current_task()
                if me is not None and me.cancelling():  # the conversation is closing
                    self.deps.record_turn(status, turn.timings)
                    self.deps.account_later(self.session, request, turn)
                    raise
            except Exception as exc:  # a bug in a turn must not take the session down
                log.exception("turn %s failed", uid)
                status = "failed"
                request.record.status = "failed"
                message = f"internal error: {type(exc).__name__}"
                await self.error(ErrorCode.INTERNAL, message, None, uid)
            finally:
                self._running = None
            if request.respond:  # input that only joins the history is not a turn
                self.deps.record_turn(status, turn.timings)
            if wasted := self.deps.take_discarded(self.session.id):  # superseded transcripts
                turn.usage.add("stt", self.deps.providers().stt.name, Usage(cpu_seconds=wasted))
            if request.respond:
                cost = await self.deps.account(self.session, request, turn)
            else:  # input that only joins the history: a reply may wait behind it, not its bill
                self.deps.account_later(self.session, request, turn)
                cost = None
            await self.deps.save(self.session)
            await self._report(uid, status, turn, cost)

    def _unwound(self, request: TurnRequest, turn: Turn) -> str:
        """A turn cancelled by ``cancel``, an interruption or the session closing."""
        uid = request.record.id
        turn.timings.total_ms = round((time.perf_counter() - request.input_end) * 1000, 2)
        request.record.timings = turn.timings
        why = self._interrupted.get(uid)
        status = "interrupted" if why else "cancelled"
        request.record.status = status  # type: ignore[assignment]
        if why:  # what was said so far is remembered, cut to what was heard (below)
            self.session.add_turn(turn.spoken_messages(), uid)
        return status

    async def _report(
        self, uid: str, status: str, turn: Turn | None, cost: CostUpdate | None = None
    ) -> None:
        """The last frames of an utterance, whatever became of it."""
        timings = turn.timings if turn else None
        if status == "cancelled":
            await self.send(UtteranceCancelled(utterance_id=uid))
        elif status == "interrupted":
            why = self._interrupted.pop(uid, "client")
            reply = self._replies.of(uid)
            # until the client reports its playout, everything sent counts as heard
            await self._stopped(uid, why, reply, reply.sent_ms)
        if timings is not None:
            tokens = _llm_tokens(turn) if turn is not None else None
            await self.send(MetricsUpdate(utterance_id=uid, timings=timings, llm_tokens=tokens))
        if cost is not None:
            await self.send(cost)
        done = UtteranceComplete(utterance_id=uid, status=status, timings=timings or StageTimings())  # type: ignore[arg-type]
        await self.send(done)

    # ------------------------------------------------------------------ closing

    def busy(self) -> bool:
        return self._running is not None or bool(self._queue)

    async def settle(self) -> None:
        """Wait until every queued and running utterance has been reported (a drain waits
        for this)."""
        while self._worker is not None and not self._worker.done():
            await asyncio.wait([self._worker])

    def idle(self) -> bool:
        return not self.busy() and self._audio_uid is None

    async def aclose(self) -> None:
        """The transport is gone: drop what waits, stop what runs, account for what was used.
        The running turn is interrupted (what was sent of it stays in the history) and, with
        what waited, told to the client if it resumes the session."""
        if self._running is not None:
            uid = self._running[0].record.id
            self._interrupted[uid] = "connection_lost"
            self.session.unreported.append(uid)
        for request in self._queue:
            _discard(request)
            self.session.unreported.append(request.record.id)
        self._queue.clear()
        self._tokens.close()
        self.stop_stall_timer()
        await self.tasks.aclose()

    async def report_unreported(self) -> None:
        """On resume: how the utterances cut by the lost connection ended."""
        told, self.session.unreported = self.session.unreported, []
        for uid in told:
            record = self.session.utterances.get(uid)
            status = record.status if record is not None else "interrupted"
            if status in ("queued", "running"):
                status = "interrupted"
            await self.send(
                UtteranceComplete(
                    utterance_id=uid,
                    status=status,  # type: ignore[arg-type]
                    timings=(record.timings if record and record.timings else StageTimings()),
                )
            )
        if told:
            self.deps.save_soon(self.session)


def _llm_tokens(turn: Turn) -> TokenCounts | None:
    used = [u for (stage, _), u in turn.usage.calls.items() if stage == "llm"]
    if not used:
        return None
    return TokenCounts(
        input=sum(u.input_tokens for u in used),
        cached=sum(u.cached_tokens for u in used),
        output=sum(u.output_tokens for u in used),
    )


def _discard(request: TurnRequest) -> None:
    """A request that will not run: cancelled, with any model work it started."""
    request.record.status = "cancelled"
    if isinstance(request.speculative, asyncio.Future):
        request.speculative.cancel()
