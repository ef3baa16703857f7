"""Realtime server events from the conversation core's frames.

The core emits voicewire's frame models (``protocol.py``); this maps each to the events of
the GA Realtime protocol as the ``openai`` SDK's types define them, with item and response
ids of its own: a user turn is an item whose id is its utterance id; a reply is a response
(``resp_...``) whose assistant message item (``item_...``) carries the audio and its
transcript; a call of a client's function tool is a ``function_call`` item that ends it.
"""

from __future__ import annotations

import asyncio
import binascii
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from voicewire.protocol import (
    Ack,
    CostUpdate,
    Error,
    ErrorCode,
    LlmComplete,
    LlmStart,
    LlmStreaming,
    MetricsUpdate,
    RateLimits,
    ReplyHeard,
    ServerFrame,
    SpeechStarted,
    SpeechStopped,
    SttComplete,
    SttStart,
    ToolCallComplete,
    ToolCallStart,
    TtsChunk,
    TtsComplete,
    UtteranceCancelled,
    UtteranceComplete,
    UtteranceInterrupted,
    VisualizationData,
)
from voicewire.realtime import items
from voicewire.realtime.codec import OutputEncoder
from voicewire.realtime.config import RealtimeConfig
from voicewire.realtime.items import Place

MAX_ITEMS = 500  # items kept for retrieve/delete/truncate; the core keeps its own history
_CODES = {  # the core's error codes that have an OpenAI name
    ErrorCode.NO_AUDIO: "input_audio_buffer_commit_empty",
    ErrorCode.INVALID_JSON: "invalid_json",
    ErrorCode.RATE_LIMITED: "rate_limit_exceeded",
}


@dataclass(slots=True)
class Response:
    """One reply as the client sees it: a response with output items."""

    id: str
    uid: str
    speak: bool
    metadata: dict[str, str] | None = None
    message: dict[str, Any] | None = None  # the assistant message item, once it has content
    output: list[dict[str, Any]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    encoder: OutputEncoder | None = None
    part: str = ""  # the message's content part as JSON members, for the hot delta events
    status: str = "completed"
    details: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # voicewire's timings and cost


class ServerEvents:
    """The core's ``Emitter`` for one Realtime connection: maps voicewire's frames to Realtime
    server events, and keeps what the protocol needs that the core does not: items by id,
    responses in progress."""

    def __init__(
        self,
        send_text: Callable[[str], Awaitable[None]],
        config: RealtimeConfig,
        session_id: str,
        extensions: bool,
    ) -> None:
        self._send_text = send_text
        self.config = config
        self.session_id = session_id
        self.extensions = extensions  # send voicewire.* events (tool calls, charts)
        self.items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.places: dict[str, Place] = {}
        self.user_items: dict[str, str] = {}  # utterance id -> its user item's id
        self.responses: dict[str, Response] = {}  # active, by utterance id
        self.truncating: str | None = None  # the item a client truncate is being applied to
        self._heard_ms: dict[str, int] = {}  # utterance id -> length of the audio transcribed
        self._replies: OrderedDict[str, str] = OrderedDict()  # utterance -> assistant item id
        self._output: OutputEncoder | None = None
        self._n = 0
        self._lock = asyncio.Lock()
        self.closed = False

    async def emit(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        async with self._lock:
            self._n += 1
            event["event_id"] = f"event_{self._n:x}"
            try:
                await self._send_text(json.dumps(event, separators=(",", ":")))
            except Exception:
                self.closed = True

    async def _emit_part(self, kind: str, r: Response, last: str) -> None:
        """A delta event of the message's content part, written without ``json.dumps``: the
        ids are ours and base64 needs no escaping (a turn sends ~100 of these)."""
        if self.closed:
            return
        async with self._lock:
            self._n += 1
            text = f'{{"type":"{kind}","event_id":"event_{self._n:x}",{r.part},{last}}}'
            try:
                await self._send_text(text)
            except Exception:
                self.closed = True

    async def error(
        self, message: str, code: str, param: str | None = None, event_id: str | None = None
    ) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        await self.emit({"type": "error", "error": {**error, "event_id": event_id}})

    async def add_item(self, item: dict[str, Any], place: Place | None) -> None:
        previous = next(reversed(self.items), None) if self.items else None
        self.items[item["id"]] = item
        if place is not None:
            self.places[item["id"]] = place
        while len(self.items) > MAX_ITEMS:
            old, _ = self.items.popitem(last=False)
            self.places.pop(old, None)
        await self.emit(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )

    async def item_done(self, item: dict[str, Any]) -> None:
        self.items[item["id"]] = item
        await self.emit({"type": "conversation.item.done", "item": item})

    # ------------------------------------------------------------------ the core's events

    async def send(self, frame: ServerFrame) -> None:
        uid = frame.utterance_id or ""
        r = self.responses.get(uid)
        match frame:
            case SpeechStarted() if self.config.turn_detection is not None:
                self.user_items[uid] = uid
                await self.emit(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": frame.offset_ms,
                        "item_id": uid,
                    }
                )
            case SpeechStopped():
                await self.emit(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": frame.offset_ms,
                        "item_id": uid,
                    }
                )
                await self._committed(uid)
            case Ack(request="audio_commit"):
                await self._committed(uid)
            case SttStart():
                self._heard_ms[uid] = frame.audio_ms
            case SttComplete():
                await self._transcribed(uid, frame.text)
            case LlmStart() if r is None:  # a turn the VAD ended: its response begins
                await self.start(uid, {})
            case LlmStreaming() if r is not None:
                await self._open_message(r)
                delta = (
                    "response.output_audio_transcript.delta"
                    if r.speak
                    else "response.output_text.delta"
                )
                r.text.append(frame.delta)
                await self._emit_part(delta, r, '"delta":' + json.dumps(frame.delta))
            case LlmComplete() if r is not None:
                r.text = [frame.text] if frame.text else r.text
            case ToolCallStart(client=True) if r is not None:
                await self._function_call(r, frame)
            case ToolCallStart() | ToolCallComplete() if r is not None and self.extensions:
                kind = "started" if isinstance(frame, ToolCallStart) else "completed"
                body = frame.model_dump(
                    exclude={"type", "session_id", "utterance_id", "seq", "ts", "client"},
                    exclude_none=True,
                )
                await self.emit(
                    {"type": f"voicewire.tool_call.{kind}", "response_id": r.id, **body}
                )
            case VisualizationData() if r is not None and self.extensions:
                await self._open_message(r)
                await self.emit(
                    {
                        "type": "voicewire.visualization",
                        "response_id": r.id,
                        "item_id": r.message["id"] if r.message else None,
                        "call_id": frame.call_id,
                        "audio_offset_ms": frame.offset_ms,
                        "figure": frame.figure,
                    }
                )
            case TtsComplete() if r is not None and r.encoder is not None:
                await self._audio(r, r.encoder(b"", last=True))
            case MetricsUpdate() if r is not None:
                r.extra["timings"] = frame.timings.model_dump(exclude_none=True)
                t = frame.llm_tokens
                if t is not None:
                    r.usage = {
                        "total_tokens": t.input + t.output,
                        "input_tokens": t.input,
                        "output_tokens": t.output,
                        "input_token_details": {
                            "cached_tokens": t.cached,
                            "text_tokens": t.input,
                            "audio_tokens": 0,
                        },
                        "output_token_details": {"text_tokens": t.output, "audio_tokens": 0},
                    }
            case CostUpdate() if r is not None:
                r.extra["cost_usd"] = frame.utterance
            case UtteranceInterrupted() if r is not None:
                reason = "turn_detected" if frame.reason == "speech" else "client_cancelled"
                r.status, r.details = "cancelled", {"type": "cancelled", "reason": reason}
            case UtteranceCancelled() if r is not None:
                r.status, r.details = (
                    "cancelled",
                    {"type": "cancelled", "reason": "client_cancelled"},
                )
            case ReplyHeard():
                await self._heard(uid, frame)
            case UtteranceComplete() if r is not None:
                if frame.status == "failed" and r.status == "completed":
                    error = {
                        "type": "server_error",
                        "code": "internal",
                        "message": "the reply failed",
                    }
                    r.status, r.details = "failed", {"type": "failed", "error": error}
                await self._finish(r)
            case UtteranceComplete(status="ignored") if self.user_items.pop(uid, None):
                # speech too short to take the floor from a reply (a cough, "mm-hm"): not a turn
                self.items.pop(uid, None)
                self.places.pop(uid, None)
                await self.emit({"type": "conversation.item.deleted", "item_id": uid})
            case Error():
                await self._on_error(frame, r)
            case RateLimits():  # OpenAI's names: turns are "requests"; no audio or sessions
                limits = [
                    {
                        "name": "requests",
                        "limit": int(x.limit),
                        "remaining": int(x.remaining),
                        "reset_seconds": x.reset_seconds,
                    }
                    for x in frame.limits
                    if x.name == "turns_per_min"
                ]
                if limits:
                    await self.emit({"type": "rate_limits.updated", "rate_limits": limits})

    async def send_audio(self, header: TtsChunk, pcm: bytes) -> None:
        r = self.responses.get(header.utterance_id or "")
        if r is None or not r.speak:
            return
        await self._open_message(r)
        if r.encoder is None:
            r.encoder = self._encoder(header.sample_rate)
        await self._audio(r, r.encoder(pcm))

    def _encoder(self, rate: int) -> OutputEncoder:
        """One per connection, reset for each reply: a resampler is costly to make."""
        encoder = self._output
        if encoder is None or encoder.rate != rate or encoder.format != self.config.output_format:
            encoder = self._output = OutputEncoder(self.config.output_format, rate)
        else:
            encoder.clear()
        return encoder

    async def _audio(self, r: Response, data: bytes) -> None:
        if data:
            delta = binascii.b2a_base64(data, newline=False).decode("ascii")
            await self._emit_part("response.output_audio.delta", r, f'"delta":"{delta}"')

    async def _committed(self, uid: str) -> None:
        self.user_items[uid] = uid
        previous = next(reversed(self.items), None) if self.items else None
        await self.emit(
            {"type": "input_audio_buffer.committed", "item_id": uid, "previous_item_id": previous}
        )
        await self.add_item(items.user_audio(uid, None), Place(uid, "user"))

    async def _transcribed(self, uid: str, text: str) -> None:
        item_id = self.user_items.pop(uid, None)
        if item_id is None:
            return
        if text:
            await self.emit(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": text,
                }
            )
        seconds = round(self._heard_ms.pop(uid, 0) / 1000, 3)
        await self.emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": text,
                "usage": {"type": "duration", "seconds": seconds},
            }
        )
        item = self.items.get(item_id)
        if item is not None:
            item["content"] = (
                [{**item["content"][0], "transcript": text}] if item["content"] else []
            )
            await self.item_done(item)

    async def start(self, uid: str, overrides: dict[str, Any]) -> None:
        modalities = overrides.get("output_modalities", self.config.output_modalities)
        r = Response(
            f"resp_{uid.removeprefix('u_')}", uid, "audio" in modalities, overrides.get("metadata")
        )
        self.responses[uid] = r
        await self.emit({"type": "response.created", "response": self._describe(r, "in_progress")})

    def _describe(self, r: Response, status: str) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": r.id,
            "status": status,
            "status_details": r.details if status != "in_progress" else None,
            "output": r.output,
            "conversation_id": f"conv_{self.session_id.removeprefix('s_')}",
            "output_modalities": ["audio"] if r.speak else ["text"],
            "max_output_tokens": self.config.max_output_tokens,
            "audio": {
                "output": {
                    "format": self.config.output_format.describe(),
                    "voice": self.config.voice,
                }
            },
            "usage": r.usage if status != "in_progress" else None,
            "metadata": r.metadata,
            **({"voicewire": r.extra} if r.extra and status != "in_progress" else {}),
        }

    def _part_ref(self, r: Response) -> dict[str, Any]:
        assert r.message is not None
        index = next(i for i, item in enumerate(r.output) if item is r.message)
        return {
            "response_id": r.id,
            "item_id": r.message["id"],
            "output_index": index,
            "content_index": 0,
        }

    async def _open_message(self, r: Response) -> None:
        if r.message is not None:
            return
        r.message = items.assistant(
            f"item_{r.uid.removeprefix('u_')}", "in_progress", r.speak, None
        )
        r.output.append(r.message)
        self._replies[r.uid] = r.message["id"]
        while len(self._replies) > MAX_ITEMS:
            self._replies.popitem(last=False)
        ref = {"response_id": r.id, "output_index": len(r.output) - 1}
        await self.emit({"type": "response.output_item.added", **ref, "item": r.message})
        await self.add_item(r.message, Place(r.uid, "assistant"))
        r.part = json.dumps(self._part_ref(r), separators=(",", ":"))[1:-1]
        part = {"type": "audio", "transcript": ""} if r.speak else {"type": "text", "text": ""}
        await self.emit({"type": "response.content_part.added", **self._part_ref(r), "part": part})

    async def _function_call(self, r: Response, frame: ToolCallStart) -> None:
        arguments = items.arguments_json(frame.arguments)
        item_id = f"item_{frame.call_id}"
        item = items.function_call(item_id, frame.call_id, frame.name, "", "in_progress")
        r.output.append(item)
        ref = {"response_id": r.id, "output_index": len(r.output) - 1}
        await self.emit({"type": "response.output_item.added", **ref, "item": item})
        await self.add_item(item, Place(r.uid, "function_call", frame.call_id))
        call = {**ref, "item_id": item_id, "call_id": frame.call_id}
        await self.emit(
            {"type": "response.function_call_arguments.delta", **call, "delta": arguments}
        )
        await self.emit(
            {
                "type": "response.function_call_arguments.done",
                **call,
                "name": frame.name,
                "arguments": arguments,
            }
        )
        done = items.function_call(item_id, frame.call_id, frame.name, arguments, "completed")
        r.output[ref["output_index"]] = done
        await self.emit({"type": "response.output_item.done", **ref, "item": done})
        await self.item_done(done)

    async def finish(self, uid: str, status: str) -> None:
        """End a response the core never ran."""
        if (r := self.responses.get(uid)) is not None:
            r.details = {"type": status}
            await self._finish(r, status)

    async def _finish(self, r: Response, status: str | None = None) -> None:
        del self.responses[r.uid]
        status = status or r.status
        if status == "cancelled" and r.details is None:
            r.details = {"type": "cancelled", "reason": "client_cancelled"}
        if r.message is not None:
            text = "".join(r.text)
            ref = self._part_ref(r)
            if r.speak:
                await self.emit({"type": "response.output_audio.done", **ref})
                await self.emit(
                    {"type": "response.output_audio_transcript.done", **ref, "transcript": text}
                )
                part = {"type": "audio", "transcript": text}
            else:
                await self.emit({"type": "response.output_text.done", **ref, "text": text})
                part = {"type": "text", "text": text}
            await self.emit({"type": "response.content_part.done", **ref, "part": part})
            item_status = "completed" if status == "completed" else "incomplete"
            done = items.assistant(r.message["id"], item_status, r.speak, text)
            r.output[ref["output_index"]] = done
            r.message = done
            del ref["content_index"], ref["item_id"]
            await self.emit({"type": "response.output_item.done", **ref, "item": done})
            await self.item_done(done)
        await self.emit({"type": "response.done", "response": self._describe(r, status)})

    async def _heard(self, uid: str, frame: ReplyHeard) -> None:
        item_id = self._replies.get(uid)
        item = self.items.get(item_id or "")
        if item is None:
            return
        if item["content"]:
            part = item["content"][0]
            item["content"] = [
                {**part, "transcript" if "transcript" in part else "text": frame.text}
            ]
        if self.truncating == item_id:
            self.truncating = None
        audio_end_ms = int(frame.played_ms)
        await self.emit(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": audio_end_ms,
            }
        )

    async def _on_error(self, frame: Error, r: Response | None) -> None:
        uid = frame.utterance_id
        if uid and frame.stage == "stt":
            item_id = self.user_items.pop(uid, None)
            if item_id is not None and frame.code == ErrorCode.STT_FAILED:
                error = {"type": "server_error", "code": frame.code.value, "message": frame.message}
                await self.emit(
                    {
                        "type": "conversation.item.input_audio_transcription.failed",
                        "item_id": item_id,
                        "content_index": 0,
                        "error": error,
                    }
                )
            return
        if r is not None and frame.stage in ("llm", "tts"):
            if frame.code == ErrorCode.REPLY_TRUNCATED:
                r.status, r.details = (
                    "incomplete",
                    {"type": "incomplete", "reason": "max_output_tokens"},
                )
            elif r.status == "completed":
                error = {"type": "server_error", "code": frame.code.value, "message": frame.message}
                r.status, r.details = "failed", {"type": "failed", "error": error}
            return
        await self.error(frame.message, _CODES.get(frame.code, frame.code.value), None, frame.ref)

    # ------------------------------------------------------------------ client events
