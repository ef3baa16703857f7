"""The ``/ws/multimodal`` adapter: one WebSocket, one conversation.

It owns the socket: it decodes and validates every client frame (bad input gets an ``error``
frame with a stable code and the session goes on), hands the decoded request to the
transport-free :class:`~voicewire.conversation.Conversation`, and serializes what the
conversation emits. The wire format lives here and in ``protocol.py``, nowhere else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import Any

from fastapi import WebSocket
from pydantic import ValidationError

from voicewire.audio import AudioError, AudioTooLong, to_input_pcm
from voicewire.conversation import Conversation, Deps
from voicewire.protocol import (
    CLIENT_FRAME_TYPES,
    INPUT_SAMPLE_RATE,
    AudioCommit,
    AudioFormat,
    BargeIn,
    Cancel,
    ErrorCode,
    Init,
    Interrupt,
    Limits,
    LlmStreaming,
    Ping,
    Playback,
    Pong,
    ServerFrame,
    SessionClosing,
    SessionUpdate,
    TtsChunk,
    UserAudio,
    UserText,
    clean_text,
    client_frame_adapter,
    encode_audio_frame,
    now_ms,
)
from voicewire.providers.runner import model_owner
from voicewire.server.backpressure import Backpressure, give_up
from voicewire.session import Session

log = logging.getLogger(__name__)


class Connection:
    """Sends with ``seq`` and ``ts`` stamped; reads, validates and dispatches client frames."""

    def __init__(
        self, ws: WebSocket, session: Session, deps: Deps, limits: Limits, send_timeout_s: float
    ) -> None:
        self.ws = ws
        self.session = session
        self.limits = limits
        self.backpressure = Backpressure(send_timeout_s)
        self._count = deps.count
        self._seq = 0
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._reader: asyncio.Task[Any] | None = None  # the task in serve(), to stop it
        self._gave_up = False  # the client stopped reading and was closed
        self._taken_over = False  # the session was resumed on a newer connection
        self._ended = False  # serve() has cleaned up
        self._finished: asyncio.Event | None = None  # made only for a waiter (close_for_resume)
        self.conversation = Conversation(session, deps, self)

    # ------------------------------------------------------------------ sending (the Emitter)

    async def send(self, frame: ServerFrame) -> None:
        await self._send(frame, None)

    async def send_audio(self, header: TtsChunk, pcm: bytes) -> None:
        await self._send(header, pcm)

    async def _send(self, frame: ServerFrame, pcm: bytes | None) -> None:
        """Stamp and send a frame; frames to a closed socket are dropped (the reader cleans up).

        ``seq`` is assigned under the lock that orders the socket writes, so wire order and
        ``seq`` order agree whichever task sends.
        """
        if self._closed or self.backpressure.drop(isinstance(frame, LlmStreaming)):
            return
        frame.session_id = self.session.id
        frame.ts = now_ms()
        async with self._send_lock:
            if self._closed:
                return
            self._seq += 1
            frame.seq = self._seq
            # serialise outside the try: a frame that cannot be encoded is a bug, not a dead socket
            data = frame.to_json() if pcm is None else encode_audio_frame(frame, pcm)  # type: ignore[arg-type]
            send = self.ws.send_text(data) if isinstance(data, str) else self.ws.send_bytes(data)
            try:
                written = await self.backpressure.write(send)
            except Exception:
                self._closed = True
                return
            if not written:
                await self._give_up()

    async def _give_up(self) -> None:
        """The client stopped reading: close it and end the session (backpressure.py)."""
        self._closed = self._gave_up = True
        self._count("errors", "client_not_reading")
        await give_up(self.ws, self._reader, self.session.id, self.backpressure.timeout_s)

    async def error(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        await self.conversation.error(code, message, ref)

    # ------------------------------------------------------------------ reader loop

    async def serve(self, init: Init) -> None:
        """Send ``init``, then read frames until the client goes; the caller accepted."""
        model_owner.set(self.session.id)  # every task of this session inherits it
        self._reader = asyncio.current_task()
        try:
            await self.send(init)
            resumed = init.resumed
            del init  # an idle session does not keep its greeting (the caller holds none)
            if resumed:
                await self.conversation.report_unreported()
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
        except asyncio.CancelledError:
            if not (self._gave_up or self._taken_over):  # the server is stopping: let it
                raise
            if (me := asyncio.current_task()) is not None:
                me.uncancel()
        except Exception as exc:  # a dead socket ends here; never leak the error to the server
            if not self._closed:
                log.debug("connection %s ended: %r", self.session.id, exc)
        finally:
            self._closed = True
            await self.conversation.aclose()
            self.backpressure.close()
            self._ended = True
            if self._finished is not None:
                self._finished.set()
            if self._gave_up:
                log.info("session %s: stopped, its client had stopped reading", self.session.id)

    async def _on_text(self, text: str) -> None:
        if len(text) > self.limits.max_frame_bytes:
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
        c = self.conversation
        match frame:
            case UserText():
                await c.user_text(frame.text, frame.ref)
            case UserAudio():
                await self._on_user_audio(frame)
            case AudioCommit():
                await c.commit(frame.ref)
            case SessionUpdate():
                await c.update(
                    frame.ref,
                    frame.turn_detection,
                    frame.silence_ms,
                    barge_in=frame.barge_in,
                    reports_playback=frame.reports_playback,
                    max_silence_ms=frame.max_silence_ms,
                    token_frames=frame.token_frames,
                )
            case Cancel():
                await c.cancel(frame.utterance_id, frame.ref)
            case Interrupt():
                await c.interrupt(frame.ref)
            case Playback():
                await c.playback(frame.utterance_id, frame.played_ms, frame.done)
            case Ping():
                await self.send(Pong(ref=frame.ref))

    def _too_large(self, size: int) -> str:
        return f"frame of {size} bytes exceeds the limit of {self.limits.max_frame_bytes}"

    async def _on_user_audio(self, frame: UserAudio) -> None:
        try:
            data = base64.b64decode(frame.audio, validate=True)
        except ValueError:  # binascii.Error, or characters outside ASCII
            await self.error(ErrorCode.BAD_AUDIO, "audio is not valid base64", frame.ref)
            return
        try:
            # off the loop: decoding and resampling a long clip takes milliseconds of CPU
            pcm = await asyncio.to_thread(
                to_input_pcm,
                data,
                frame.format,
                frame.sample_rate,
                INPUT_SAMPLE_RATE,
                self.limits.max_audio_s,
            )
        except AudioTooLong as exc:
            await self.error(ErrorCode.AUDIO_TOO_LONG, str(exc), frame.ref)
            return
        except AudioError as exc:
            await self.error(ErrorCode.BAD_AUDIO, str(exc), frame.ref)
            return
        await self.conversation.user_audio(pcm, frame.ref)

    async def _on_audio(self, data: bytes) -> None:
        if len(data) > self.limits.max_frame_bytes:
            await self.error(ErrorCode.FRAME_TOO_LARGE, self._too_large(len(data)))
        elif not data:
            await self.error(ErrorCode.BAD_AUDIO, "empty binary frame: expected PCM s16le audio")
        elif len(data) % 2:
            message = f"PCM s16le audio needs an even byte count, got {len(data)}"
            await self.error(ErrorCode.BAD_AUDIO, message)
        else:
            await self.conversation.mic_audio(data)

    # ------------------------------------------------------------------ closing

    def busy(self) -> bool:
        return self.conversation.busy()

    def idle(self) -> bool:
        return self.conversation.idle()

    async def close_for_shutdown(self) -> None:
        """The server drains: say so, then close as "going away" (1001)."""
        message = "the server is shutting down; reconnect to continue"
        with contextlib.suppress(Exception):
            await self.send(SessionClosing(message=message))
        with contextlib.suppress(Exception):
            await self.ws.close(code=1001, reason="server shutting down")

    async def close_for_resume(self) -> None:
        """The client resumed this session on a new connection (this one is stale, often
        half-open): close it (4001) and wait until its turns have unwound, so the new
        connection hears how they ended."""
        self._taken_over = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.ws.close(code=4001, reason="resumed on another connection"), 1.0
            )
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        if not self._ended:
            self._finished = self._finished or asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), 5.0)

    async def close_idle(self) -> None:
        await self.error(ErrorCode.IDLE_TIMEOUT, "closing an idle session")
        with contextlib.suppress(Exception):
            await self.ws.close(code=1000, reason="idle timeout")


def init_frame(
    session: Session,
    version: str,
    output_rate: int,
    providers: dict[str, str],
    limits: Limits,
    barge_in: BargeIn,
    resume_token: str | None,
    resumed: bool,
) -> Init:
    return Init(
        resume_token=resume_token,
        resumed=resumed,
        server_version=version,
        input_audio=AudioFormat(sample_rate=INPUT_SAMPLE_RATE),
        output_audio=AudioFormat(sample_rate=output_rate),
        providers=providers,
        turn_detection=session.turn_detection,
        silence_ms=session.silence_ms,
        limits=limits,
        barge_in=barge_in,
    )


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
