"""One WebSocket connection to ``/ws/multimodal``: one session, its input and its utterances.

The reader loop validates every client frame (bad input gets an ``error`` frame with a stable
code and the loop goes on), feeds microphone audio to the endpointer, and queues utterances.
Utterances of a session run strictly in order, one at a time, in a worker task that exists only
while there is work, so an idle connection holds no task but uvicorn's own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from fastapi import WebSocket
from pydantic import ValidationError

from voicewire import __version__
from voicewire.audio import AudioError, AudioTooLong, to_input_pcm
from voicewire.pipeline.audio_input import AudioInput
from voicewire.pipeline.endpointing import EndpointEvent, EndpointingConfig
from voicewire.pipeline.turn import Turn, TurnRequest
from voicewire.protocol import (
    CLIENT_FRAME_TYPES,
    INPUT_SAMPLE_RATE,
    Ack,
    AudioCommit,
    AudioFormat,
    Cancel,
    CostUpdate,
    Error,
    ErrorCode,
    Init,
    Limits,
    MetricsUpdate,
    Ping,
    Pong,
    ProviderFallback,
    ServerFrame,
    SessionUpdate,
    SpeechStarted,
    SpeechStopped,
    StageTimings,
    TtsChunk,
    UserAudio,
    UserText,
    UtteranceCancelled,
    UtteranceComplete,
    clean_text,
    client_frame_adapter,
    encode_audio_frame,
    now_ms,
)
from voicewire.providers.base import Transcript
from voicewire.providers.runner import Priority, model_owner, model_priority
from voicewire.session import Session, UtteranceRecord, new_id

if TYPE_CHECKING:
    from voicewire.server.runtime import Runtime

log = logging.getLogger(__name__)


class Connection:
    def __init__(self, ws: WebSocket, rt: Runtime) -> None:
        self.ws = ws
        self.rt = rt
        s = rt.settings
        self.session = Session(s.turn_detection, s.silence_ms, s.history_turns)
        self._seq = 0
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._queue: deque[TurnRequest] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._running: tuple[str, asyncio.Task[str]] | None = None
        self._audio: AudioInput | None = None
        self._audio_uid: str | None = None  # utterance the incoming audio belongs to
        self._speculation: asyncio.Task[Transcript] | None = None

    # ------------------------------------------------------------------ sending (the Emitter)

    async def send(self, frame: ServerFrame) -> None:
        if isinstance(frame, Error):
            self.rt.metrics.errors[frame.code.value] += 1
        elif isinstance(frame, ProviderFallback):
            self.rt.metrics.fallbacks[(frame.stage, frame.failed)] += 1
        await self._send(frame, None)

    async def send_audio(self, header: TtsChunk, pcm: bytes) -> None:
        await self._send(header, pcm)

    async def _send(self, frame: ServerFrame, pcm: bytes | None) -> None:
        """Stamp and send a frame; frames to a closed socket are dropped (the reader cleans up).

        ``seq`` is assigned under the lock that orders the socket writes, so wire order and
        ``seq`` order agree whichever task sends.
        """
        if self._closed:
            return
        frame.session_id = self.session.id
        frame.ts = now_ms()
        async with self._send_lock:
            self._seq += 1
            frame.seq = self._seq
            # serialise outside the try: a frame that cannot be encoded is a bug, not a dead socket
            data = frame.to_json() if pcm is None else encode_audio_frame(frame, pcm)  # type: ignore[arg-type]
            try:
                if isinstance(data, str):
                    await self.ws.send_text(data)
                else:
                    await self.ws.send_bytes(data)
            except Exception:
                self._closed = True

    async def error(
        self, code: ErrorCode, message: str, ref: str | None = None, uid: str | None = None
    ) -> None:
        await self.send(Error(code=code, message=message, ref=ref, utterance_id=uid))

    # ------------------------------------------------------------------ reader loop

    async def serve(self) -> None:
        model_owner.set(self.session.id)  # every task of this session inherits it
        await self.ws.accept()
        self.rt.store.add(self.session)
        self.rt.connections[self.session.id] = self
        self.rt.metrics.connections_total += 1
        try:
            await self.rt.loaded.wait()  # a client may connect while the models still load
            if self.rt.status != "ready":
                await self.error(ErrorCode.INTERNAL, f"server failed to start: {self.rt.error}")
                await self.ws.close(code=1011, reason="server failed to start")
                return
            await self.send(self._init_frame())
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                self.session.touch()
                try:
                    if (data := message.get("bytes")) is not None:
                        await self._on_audio(data)
                    elif (text := message.get("text")) is not None:
                        await self._on_text(text)
                except Exception as exc:  # a bug or an input we did not foresee: say so, go on
                    if self._closed:
                        raise
                    log.exception("session %s: unexpected error handling a frame", self.session.id)
                    await self.error(
                        ErrorCode.INTERNAL, f"internal error handling a frame: {type(exc).__name__}"
                    )
        except Exception as exc:  # a dead socket ends here; never leak the error to the server
            if not self._closed:
                log.debug("connection %s ended: %r", self.session.id, exc)
        finally:
            await self._shutdown()

    def _init_frame(self) -> Init:
        s = self.rt.settings
        providers = self.rt.require_providers()
        return Init(
            server_version=__version__,
            input_audio=AudioFormat(sample_rate=INPUT_SAMPLE_RATE),
            output_audio=AudioFormat(sample_rate=providers.tts.sample_rate),
            providers=providers.describe(),
            turn_detection=self.session.turn_detection,
            silence_ms=self.session.silence_ms,
            limits=Limits(
                max_text_chars=s.max_text_chars,
                max_frame_bytes=s.max_frame_bytes,
                max_audio_s=s.max_audio_s,
                max_queued_utterances=s.max_queued_utterances,
                max_reply_chars=s.max_reply_chars,
                max_reply_audio_s=s.max_reply_audio_s,
            ),
        )

    async def _on_text(self, text: str) -> None:
        if len(text) > self.rt.settings.max_frame_bytes:
            await self.error(ErrorCode.FRAME_TOO_LARGE, self._too_large(len(text)))
            return
        try:
            raw = json.loads(text)
        except RecursionError:
            await self.error(ErrorCode.INVALID_JSON, "frame is not valid JSON: nested too deep")
            return
        except ValueError as exc:
            await self.error(ErrorCode.INVALID_JSON, f"frame is not valid JSON: {exc}")
            return
        if not isinstance(raw, dict):
            await self.error(ErrorCode.INVALID_FRAME, "a frame must be a JSON object")
            return
        ref = raw.get("ref")
        ref = clean_text(ref) if isinstance(ref, str) and len(ref) <= 128 else None
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in CLIENT_FRAME_TYPES:
            known = ", ".join(CLIENT_FRAME_TYPES)
            await self.error(
                ErrorCode.UNKNOWN_TYPE,
                f"unknown frame type {_short(kind)}; expected one of: {known}",
                ref,
            )
            return
        try:
            frame = client_frame_adapter.validate_python(raw)
        except ValidationError as exc:
            await self.error(ErrorCode.INVALID_FRAME, _describe(exc), ref)
            return
        match frame:
            case UserText():
                await self._on_user_text(frame)
            case UserAudio():
                await self._on_user_audio(frame)
            case AudioCommit():
                await self._on_commit(frame)
            case SessionUpdate():
                await self._on_session_update(frame)
            case Cancel():
                await self._on_cancel(frame)
            case Ping():
                await self.send(Pong(ref=frame.ref))

    def _too_large(self, size: int) -> str:
        return f"frame of {size} bytes exceeds the limit of {self.rt.settings.max_frame_bytes}"

    # ------------------------------------------------------------------ requests

    async def _on_user_text(self, frame: UserText) -> None:
        text = frame.text.strip()
        limit = self.rt.settings.max_text_chars
        if not text:
            await self.error(ErrorCode.INVALID_FRAME, "text is empty", frame.ref)
        elif len(text) > limit:
            await self.error(
                ErrorCode.TEXT_TOO_LONG,
                f"text has {len(text)} characters; limit {limit}",
                frame.ref,
            )
        else:
            record = UtteranceRecord(new_id("u"), "text")
            await self._submit(
                TurnRequest(record, time.perf_counter(), text=text), "user_text", frame.ref
            )

    async def _on_user_audio(self, frame: UserAudio) -> None:
        limit = self.rt.settings.max_audio_s
        try:
            data = base64.b64decode(frame.audio, validate=True)
            # off the loop: decoding and resampling a long clip takes milliseconds of CPU
            pcm = await asyncio.to_thread(
                to_input_pcm, data, frame.format, frame.sample_rate, INPUT_SAMPLE_RATE, limit
            )
        except binascii.Error:
            await self.error(ErrorCode.BAD_AUDIO, "audio is not valid base64", frame.ref)
            return
        except AudioTooLong as exc:
            await self.error(ErrorCode.AUDIO_TOO_LONG, str(exc), frame.ref)
            return
        except AudioError as exc:
            await self.error(ErrorCode.BAD_AUDIO, str(exc), frame.ref)
            return
        if not await self._within_duration(len(pcm), frame.ref):
            return
        record = UtteranceRecord(new_id("u"), "audio")
        await self._submit(
            TurnRequest(record, time.perf_counter(), audio=pcm), "user_audio", frame.ref
        )

    async def _within_duration(
        self, pcm_bytes: int, ref: str | None, uid: str | None = None
    ) -> bool:
        seconds = pcm_bytes / 2 / INPUT_SAMPLE_RATE
        limit = self.rt.settings.max_audio_s
        if seconds <= limit:
            return True
        await self.error(
            ErrorCode.AUDIO_TOO_LONG,
            f"audio of {seconds:.1f} s exceeds the limit of {limit:g} s",
            ref,
            uid,
        )
        return False

    async def _on_commit(self, frame: AudioCommit) -> None:
        audio = self._audio.take() if self._audio else b""
        uid, self._audio_uid = self._audio_uid, None
        speculation = self._hand_over_speculation()
        if not audio or uid is None:
            if speculation is not None:
                speculation.cancel()
            await self.error(
                ErrorCode.NO_AUDIO, "no audio was streamed since the last commit", frame.ref
            )
            return
        record = UtteranceRecord(uid, "audio")
        request = TurnRequest(record, time.perf_counter(), audio=audio, speculative=speculation)
        await self._submit(request, "audio_commit", frame.ref)

    async def _on_session_update(self, frame: SessionUpdate) -> None:
        if frame.turn_detection is not None:
            self.session.turn_detection = frame.turn_detection
        if frame.silence_ms is not None:
            self.session.silence_ms = frame.silence_ms
        if self._audio is not None:
            self._audio.set_mode(
                self.session.turn_detection == "server_vad", self.session.silence_ms
            )
        await self.send(Ack(request="session_update", ref=frame.ref))

    async def _on_cancel(self, frame: Cancel) -> None:
        uid = frame.utterance_id
        await self.send(Ack(request="cancel", utterance_id=uid, ref=frame.ref))
        if self._running and self._running[0] == uid:
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
            self._drop_speculation()
            await self._report(uid, "cancelled", None)
            return
        await self.error(
            ErrorCode.UNKNOWN_UTTERANCE, f"no queued or running utterance {uid!r}", frame.ref, uid
        )

    # ------------------------------------------------------------------ microphone audio

    async def _on_audio(self, data: bytes) -> None:
        s = self.rt.settings
        if len(data) > s.max_frame_bytes:
            await self.error(ErrorCode.FRAME_TOO_LARGE, self._too_large(len(data)))
            return
        if not data:
            await self.error(ErrorCode.BAD_AUDIO, "empty binary frame: expected PCM s16le audio")
            return
        if len(data) % 2:
            await self.error(
                ErrorCode.BAD_AUDIO, f"PCM s16le audio needs an even byte count, got {len(data)}"
            )
            return
        if self._audio is None:
            config = EndpointingConfig(
                silence_ms=self.session.silence_ms,
                min_speech_ms=s.vad_min_speech_ms,
                pause_ms=s.speculative_stt_ms,
            )
            vad_ends = self.session.turn_detection == "server_vad"
            self._audio = AudioInput(config, s.vad_aggressiveness, vad_ends, s.vad_energy_floor)
        audio = self._audio
        if self._audio_uid is None and not audio.vad_ends_turns:
            self._audio_uid = new_id("u")
        for event in audio.feed(data, time.perf_counter()):
            await self._on_audio_event(event.kind, event.offset_ms, event.audio)
        collecting = audio.has_speech or not audio.vad_ends_turns
        if collecting and not await self._within_duration(audio.turn_bytes, None, self._audio_uid):
            audio.take()
            self._audio_uid = None
            self._drop_speculation()

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
            self._speculate(audio.turn_audio)
        elif kind is EndpointEvent.RESUME:
            self._drop_speculation()  # the user spoke again: that transcript is already stale
        elif kind is EndpointEvent.END and turn_audio is not None and self._audio_uid is not None:
            uid, self._audio_uid = self._audio_uid, None
            speculation = self._hand_over_speculation()
            await self.send(SpeechStopped(utterance_id=uid, offset_ms=round(offset_ms)))
            record = UtteranceRecord(uid, "audio")
            request = TurnRequest(
                record, audio.last_speech_at, audio=turn_audio, speculative=speculation
            )
            await self._submit(request, None, None)

    # ------------------------------------------------------------------ speculative STT

    def _speculate(self, turn_audio: bytes) -> None:
        """Transcribe the turn so far at a pause, as low-priority model work.

        At most one per session: a newer pause supersedes the older job, which is dropped if it
        has not started (a running one finishes, its result unused).
        """
        self._drop_speculation()
        ctx = contextvars.copy_context()
        ctx.run(model_priority.set, Priority.SPECULATIVE)
        stt = self.rt.require_providers().stt
        task = asyncio.get_running_loop().create_task(
            stt.transcribe(turn_audio, INPUT_SAMPLE_RATE), context=ctx
        )
        task.add_done_callback(_consume_exception)
        self._speculation = task

    def _drop_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation.cancel()
            self._speculation = None

    def _hand_over_speculation(self) -> asyncio.Task[Transcript] | None:
        """The turn ended at the pause: its transcript is wanted now, not speculatively."""
        speculation, self._speculation = self._speculation, None
        if speculation is not None:
            self.rt.runner.promote(self.session.id)
        return speculation

    # ------------------------------------------------------------------ utterance queue

    async def _submit(self, request: TurnRequest, ack_for: str | None, ref: str | None) -> None:
        uid = request.record.id
        depth = len(self._queue) + (1 if self._running else 0)
        if depth >= self.rt.settings.max_queued_utterances:
            _discard(request)  # its turn will not run
            await self.error(ErrorCode.BUSY, f"{depth} utterances are already waiting", ref, uid)
            return
        if ack_for is not None:
            await self.send(Ack(request=ack_for, utterance_id=uid, ref=ref))
        self.session.record(request.record)
        self._queue.append(request)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        rt = self.rt
        while self._queue:
            request = self._queue.popleft()
            uid = request.record.id
            turn = Turn(
                request, self.session, rt.require_providers(), self, rt.turn_config, rt.tools
            )
            task = asyncio.create_task(turn.run())
            self._running = (uid, task)
            try:
                status = await task
            except asyncio.CancelledError:
                status = "cancelled"
                turn.timings.total_ms = round((time.perf_counter() - request.input_end) * 1000, 2)
                request.record.status = "cancelled"
                request.record.timings = turn.timings
                me = asyncio.current_task()
                if me is not None and me.cancelling():  # the connection is closing
                    rt.metrics.record_turn(status, turn.timings)
                    rt.account_later(self.session, request, turn)
                    raise
            except Exception as exc:  # a bug in a turn must not take the session down
                log.exception("turn %s failed", uid)
                status = "failed"
                request.record.status = "failed"
                await self.error(
                    ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}", None, uid
                )
            finally:
                self._running = None
            rt.metrics.record_turn(status, turn.timings)
            cost = await rt.account(self.session, request, turn)
            await self._report(uid, status, turn, cost)

    async def _report(
        self, uid: str, status: str, turn: Turn | None, cost: CostUpdate | None = None
    ) -> None:
        """The last frames of an utterance, whatever became of it."""
        timings = turn.timings if turn else None
        if status == "cancelled":
            await self.send(UtteranceCancelled(utterance_id=uid))
        if timings is not None:
            await self.send(MetricsUpdate(utterance_id=uid, timings=timings))
        if cost is not None:
            await self.send(cost)
        await self.send(
            UtteranceComplete(utterance_id=uid, status=status, timings=timings or StageTimings())
        )  # type: ignore[arg-type]

    # ------------------------------------------------------------------ closing

    def busy(self) -> bool:
        return self._running is not None or bool(self._queue)

    def idle(self) -> bool:
        return not self.busy() and self._audio_uid is None

    async def close_idle(self) -> None:
        await self.error(ErrorCode.IDLE_TIMEOUT, "closing an idle session")
        with contextlib.suppress(Exception):
            await self.ws.close(code=1000, reason="idle timeout")

    async def _shutdown(self) -> None:
        self._closed = True
        self.session.connected = False
        self.session.touch()
        for request in self._queue:
            _discard(request)
        self._queue.clear()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._drop_speculation()  # orphaned: nobody will use it
        self.rt.connections.pop(self.session.id, None)


def _discard(request: TurnRequest) -> None:
    """A request that will not run: cancelled, with any model work it started."""
    request.record.status = "cancelled"
    if isinstance(request.speculative, asyncio.Future):
        request.speculative.cancel()


def _consume_exception(future: asyncio.Future[Any]) -> None:
    """Speculative work may fail or be dropped; never log 'exception was never retrieved'."""
    if not future.cancelled():
        future.exception()


def _short(value: Any, limit: int = 64) -> str:
    """A client's value for an error message: never echo a megabyte back."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"][1:]) or "frame"
        parts.append(f"{where}: {err['msg']}")
    return "invalid frame: " + "; ".join(parts)
