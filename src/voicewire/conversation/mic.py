"""The microphone: streamed audio to turns (endpointing, speculation, barge-in by speech).

A part of :class:`~voicewire.conversation.core.Conversation` (its base class), kept apart so
the core reads in one sitting. Audio is heard in 100 ms pieces whatever the frame size, so a
burst or a recording sent whole is endpointed, and can interrupt, as audio in real time does.
At a pause a speculative transcription starts; when the silence is long enough the words are
judged (``speculation.py``: a sentence that sounds unfinished waits up to ``max_silence_ms``);
the turn then goes to the queue with its transcript, if the speculation heard it all.

A client that stops sending in the middle of a turn (a muted microphone, a push-to-talk button
let go without ``audio_commit``, a tab sent to the background) would hold the turn open for
ever: after ``mic_stall_ms`` without audio the missing audio is heard as silence, so the turn
ends as it would have had the microphone stayed open in a quiet room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from voicewire.pipeline.audio_input import AudioInput
from voicewire.pipeline.endpointing import EndpointEvent, EndpointingConfig
from voicewire.pipeline.turn_types import ReplyOptions, TurnRequest
from voicewire.protocol import ServerFrame, SpeechStarted, SpeechStopped
from voicewire.session import Session, UtteranceRecord, new_id

if TYPE_CHECKING:
    from voicewire.conversation.core import ConversationConfig, Deps
    from voicewire.conversation.speculation import Speculation
    from voicewire.conversation.tasks import TaskSet

log = logging.getLogger(__name__)

MIC_PIECE_BYTES = 3200  # 100 ms of 16 kHz PCM
HELD_BACK_S = 2.0  # speech ignored this recently starts the turn that interrupts


class MicInput:
    # the conversation's state this part reads and writes (set in Conversation.__init__)
    session: Session
    deps: Deps
    cfg: ConversationConfig
    barge_in: bool
    auto_respond: bool
    options: ReplyOptions
    max_silence_ms: int
    _audio: AudioInput | None
    _audio_uid: str | None
    _speculation: Speculation
    _took_floor: bool
    _held_back: tuple[bytes, float] | None
    _mic_lock: asyncio.Lock | None  # one feeder at a time: the client, or the stall's silence
    _stall: asyncio.TimerHandle | None  # armed while a turn is open and audio comes
    _last_audio_at: float  # loop time
    tasks: TaskSet
    send: Callable[[ServerFrame], Awaitable[None]]
    _report: Callable[..., Awaitable[None]]
    _submit: Callable[[TurnRequest, str | None, str | None], Awaitable[bool]]
    _within_duration: Callable[..., Awaitable[bool]]
    _reply_active: Callable[[], bool]
    _interrupt: Callable[[str], Awaitable[None]]
    _speech_floor: Callable[[], float]

    async def mic_audio(self, pcm: bytes) -> None:
        """Streamed PCM s16le 16 kHz (even length, checked by the adapter)."""
        cfg = self.cfg
        if self._audio is None:
            endpointing = EndpointingConfig(
                silence_ms=self.session.silence_ms,
                min_speech_ms=cfg.vad_min_speech_ms,
                pause_ms=cfg.speculative_stt_ms,
                max_silence_ms=self._semantic_ms(),
            )
            vad_ends = self.session.turn_detection == "server_vad"
            self._audio = AudioInput(
                endpointing,
                cfg.vad_aggressiveness,
                vad_ends,
                cfg.vad_energy_floor,
                cfg.vad_noise_ratio,
                cfg.vad,
            )
            self._mic_lock = asyncio.Lock()
        assert self._mic_lock is not None
        async with self._mic_lock:
            # a long frame (a burst, a recording sent whole) is heard piece by piece, so that
            # barge-in is decided as often as for audio that comes in real time
            now = time.perf_counter()
            for i in range(0, len(pcm), MIC_PIECE_BYTES):
                await self._hear(pcm[i : i + MIC_PIECE_BYTES], now)
        if cfg.mic_stall_ms:
            loop = asyncio.get_running_loop()
            self._last_audio_at = loop.time()
            if self._stall is None and self._audio.vad_ends_turns and self._audio.has_speech:
                self._stall = loop.call_later(cfg.mic_stall_ms / 1000, self._check_stall)

    def _check_stall(self) -> None:
        """The stall timer: re-armed for what is left if audio came since, else the turn is
        ended with silence (a deadline checked when it fires, not a timer per frame)."""
        self._stall = None
        audio = self._audio
        if audio is None or not (audio.vad_ends_turns and audio.has_speech):
            return
        loop = asyncio.get_running_loop()
        left = self._last_audio_at + self.cfg.mic_stall_ms / 1000 - loop.time()
        if left > 0:
            self._stall = loop.call_later(left, self._check_stall)
            return
        stalled_ms = self.cfg.mic_stall_ms
        log.info("session %s: no audio for %d ms mid-turn: silence", self.session.id, stalled_ms)
        # the longest silence that can end a turn, and a piece more
        longest = max(self.session.silence_ms, self._semantic_ms()) + 200
        self.tasks.create(self.mic_audio(bytes(int(longest) * 32)), "mic-stall")

    def stop_stall_timer(self) -> None:
        """The conversation closes: no stall to end any more."""
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    async def _hear(self, pcm: bytes, now: float) -> None:
        cfg = self.cfg
        audio = self._audio
        assert audio is not None
        if self._audio_uid is None and not audio.vad_ends_turns:
            self._audio_uid = new_id("u")
        audio.set_floor(self._speech_floor())
        events = audio.feed(pcm, now)
        while events:
            for event in events:
                await self._on_audio_event(event.kind, event.offset_ms, event.audio)
            if events[-1].kind is not EndpointEvent.CHECK:
                break
            # the words so far, judged before more audio is read (speculation.py)
            reason = await self._speculation.unfinished(self.session.messages())
            if reason is not None:
                self.deps.count("turn_waits", reason)
            end = audio.decide(reason is None)
            events = ([end] if end else []) + audio.feed(b"", now)
        held = audio.speech_run_ms >= cfg.interrupt_min_speech_ms
        if self.barge_in and held and not self._took_floor and self._reply_active():
            await self._interrupt("speech")
        collecting = audio.has_speech or not audio.vad_ends_turns
        if collecting and not await self._within_duration(audio.turn_bytes, None, self._audio_uid):
            audio.take()
            self._audio_uid = None
            self._speculation.drop()

    async def _on_audio_event(
        self, kind: EndpointEvent, offset_ms: float, turn_audio: bytes | None
    ) -> None:
        audio = self._audio
        assert audio is not None
        if kind is EndpointEvent.SPEECH_START:
            if self._audio_uid is None:
                self._audio_uid = new_id("u")
            await self.send(SpeechStarted(utterance_id=self._audio_uid, offset_ms=round(offset_ms)))
        elif kind is EndpointEvent.PAUSE:
            self._speculation.start(audio.turn_audio)
        elif kind is EndpointEvent.RESUME:
            self._speculation.drop()  # the user spoke again: that transcript is already stale
        elif kind is EndpointEvent.END and turn_audio is not None and self._audio_uid is not None:
            uid, self._audio_uid = self._audio_uid, None
            speculation = self._speculation.hand_over()
            await self.send(SpeechStopped(utterance_id=uid, offset_ms=round(offset_ms)))
            if self.barge_in and self._reply_active() and not self._took_floor:
                # too short to take the floor (a cough, "mm-hm") while the agent talks: not a
                # turn; kept a moment in case it was the start of one ("Wait, ... stop")
                if speculation is not None:
                    speculation.cancel()
                self._held_back = (turn_audio, time.perf_counter())
                await self._report(uid, "ignored", None)
                return
            if self._held_back is not None:
                held, at = self._held_back
                self._held_back = None
                if self._took_floor and time.perf_counter() - at < HELD_BACK_S:
                    turn_audio = held + turn_audio
                    if speculation is not None:  # it heard only the second part
                        speculation.cancel()
                        speculation = None
            record = UtteranceRecord(uid, "audio")
            request = TurnRequest(
                record,
                audio.last_speech_at,
                audio=turn_audio,
                speculative=speculation,
                respond=self.auto_respond,
                options=self.options,
            )
            await self._submit(request, None, None)

    def _semantic_ms(self) -> float:
        """The endpointer's ``max_silence_ms``: 0 (a fixed silence) without speculative STT,
        which is what the words are judged from."""
        return float(self.max_silence_ms) if self.cfg.speculative_stt_ms else 0.0
