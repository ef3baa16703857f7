"""The OpenAI Realtime adapter (``/v1/realtime``): the conversation core behind the GA Realtime
event protocol, so the clients people already have (the ``openai`` SDKs, the Agents SDK)
talk to voicewire by changing their base URL.

Like ``server/connection.py`` it owns the socket and nothing else: client events are checked
against the ``openai`` SDK's own models and turned into calls on the
:class:`~voicewire.conversation.Conversation`; what the core emits is mapped to server events
by :class:`~voicewire.realtime.events.ServerEvents`. What is supported: ``docs/realtime.md``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import Any

from fastapi import WebSocket
from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter, ValidationError

from voicewire.conversation import Conversation, Deps
from voicewire.protocol import INPUT_SAMPLE_RATE
from voicewire.providers.runner import model_owner
from voicewire.realtime import items
from voicewire.realtime.codec import InputDecoder
from voicewire.realtime.config import BadRequest, RealtimeConfig, check_response
from voicewire.realtime.events import ServerEvents
from voicewire.realtime.items import Place
from voicewire.server.backpressure import Backpressure, give_up
from voicewire.session import Session, new_id

log = logging.getLogger(__name__)
_client_event: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)


class RealtimeConnection:
    def __init__(
        self,
        ws: WebSocket,
        session: Session,
        deps: Deps,
        config: RealtimeConfig,
        max_event_bytes: int,
        extensions: bool = False,
        send_timeout_s: float = 10.0,
    ) -> None:
        self.ws = ws
        self.session = session
        self.config = config
        self.max_event_bytes = max_event_bytes
        self.backpressure = Backpressure(send_timeout_s)
        self._reader: asyncio.Task[Any] | None = None
        self._gave_up = False
        self.out = ServerEvents(self._write, config, session.id, extensions)
        self.conversation = Conversation(session, deps, self.out)
        self.conversation.reports_playback = True  # Realtime clients play what they are sent
        self.conversation.options = config.reply_options()
        self._decoder = InputDecoder(config.input_format, INPUT_SAMPLE_RATE)

    async def _write(self, text: str) -> None:
        """One event to the client; transcript deltas are dropped while it reads slowly (the
        ``.done`` events carry the whole text), and a client that stops reading is let go."""
        if self.backpressure.drop(text.startswith(_DELTA)):
            return
        if not await self.backpressure.write(self.ws.send_text(text)):
            self._gave_up = True
            await give_up(self.ws, self._reader, self.session.id, self.backpressure.timeout_s)
            raise ConnectionError("the client stopped reading")

    async def serve(self) -> None:
        model_owner.set(self.session.id)
        self._reader = asyncio.current_task()
        try:
            await self.out.emit(
                {"type": "session.created", "session": self.config.describe(self.session.id)}
            )
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                self.session.touch()
                try:
                    if (text := message.get("text")) is not None:
                        await self._on_text(text)
                    else:
                        await self.out.error("send events as JSON text messages", "invalid_value")
                except BadRequest as exc:
                    await self.out.error(exc.message, exc.code, exc.param)
                except Exception as exc:  # a bug or an input we did not foresee: say so, go on
                    if self.out.closed:
                        raise
                    log.exception("session %s: unexpected error handling an event", self.session.id)
                    await self.out.error(
                        f"internal error handling an event: {type(exc).__name__}", "internal"
                    )
        except asyncio.CancelledError:
            if not self._gave_up:  # the server is stopping: let it
                raise
            if (me := asyncio.current_task()) is not None:
                me.uncancel()
        except Exception as exc:
            if not self.out.closed:
                log.debug("realtime connection %s ended: %r", self.session.id, exc)
        finally:
            self.out.closed = True
            await self.conversation.aclose()
            self.backpressure.close()
            if self._gave_up:
                log.info("session %s: stopped, its client had stopped reading", self.session.id)

    async def _on_text(self, text: str) -> None:
        if len(text) > self.max_event_bytes:
            raise BadRequest(
                f"event of {len(text)} bytes exceeds the limit of {self.max_event_bytes}",
                None,
                "event_too_large",
            )
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"event is not valid JSON: {exc}", None, "invalid_json") from None
        if not isinstance(raw, dict):
            raise BadRequest("an event must be a JSON object", None, "invalid_json")
        event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
        kind = raw.get("type")
        if kind == "input_audio_buffer.append":  # the hot path: no model validation
            audio = raw.get("audio")
            if not isinstance(audio, str):
                await self.out.error(
                    "audio must be a base64 string", "invalid_value", "audio", event_id
                )
                return
            try:
                data = base64.b64decode(audio, validate=True)
            except ValueError:  # binascii.Error, or characters outside ASCII
                await self.out.error(
                    "audio is not valid base64", "invalid_value", "audio", event_id
                )
                return
            if pcm := self._decoder(data):
                await self.conversation.mic_audio(pcm)
            return
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self.out.error(
                f"Invalid value: {str(kind)[:64]!r}. Supported values are: {', '.join(_HANDLERS)}.",
                "invalid_value",
                "type",
                event_id,
            )
            return
        try:
            _client_event.validate_python(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"][1:])
            await self.out.error(
                f"Invalid value for '{loc}': {err['msg']}", "invalid_value", loc or None, event_id
            )
            return
        try:
            await handler(self, raw, event_id)
        except BadRequest as exc:
            await self.out.error(exc.message, exc.code, exc.param, event_id)

    async def _session_update(self, raw: dict[str, Any], event_id: str | None) -> None:
        before = self.config.input_format
        self.config.update(raw.get("session"))
        self.conversation.options = self.config.reply_options()
        if self.config.input_format != before:
            self._decoder = InputDecoder(self.config.input_format, INPUT_SAMPLE_RATE)
        tt = self.config.turn_taking()
        c = self.conversation
        c.auto_respond = tt.auto_respond
        await c.update(
            event_id,
            tt.mode,
            tt.silence_ms,
            barge_in=tt.barge_in,
            max_silence_ms=tt.max_silence_ms,
        )
        await self.out.emit(
            {"type": "session.updated", "session": self.config.describe(self.session.id)}
        )

    async def _commit(self, raw: dict[str, Any], event_id: str | None) -> None:
        await self.conversation.commit(event_id, respond=False)

    async def _clear(self, raw: dict[str, Any], event_id: str | None) -> None:
        self.conversation.clear_input()
        await self.out.emit({"type": "input_audio_buffer.cleared"})

    async def _item_create(self, raw: dict[str, Any], event_id: str | None) -> None:
        previous = raw.get("previous_item_id")
        last = next(reversed(self.out.items), None) if self.out.items else None
        if previous is not None and previous != last and not (previous == "root" and last is None):
            raise BadRequest(
                "items can only be added at the end of the conversation", "previous_item_id"
            )
        given = raw["item"]
        if given.get("id") and given["id"] in self.out.items:
            raise BadRequest(f"item {given['id']!r} already exists", "item.id")
        new = items.client_item(given, self._decode_clip)
        chars = sum(len(m.get("content") or "") for m in new.messages)
        if chars > (limit := self.conversation.cfg.max_text_chars):
            raise BadRequest(
                f"text has {chars} characters; limit {limit}", "item.content", "text_too_long"
            )
        c = self.conversation
        uid = new_id("u")
        if new.audio is not None:
            self.out.user_items[uid] = new.item["id"]  # before the turn can say a word
            if not await c.user_audio(new.audio, event_id, respond=False, uid=uid):
                self.out.user_items.pop(uid, None)
                return
            new.item["content"] = [{"type": "input_audio", "transcript": None}]
        elif not await c.add(new.messages, event_id, uid):
            return
        await self.out.add_item(new.item, Place(uid, new.kind, new.call_id))
        if new.audio is None:
            await self.out.item_done(new.item)

    def _decode_clip(self, b64: str, param: str) -> bytes:
        try:
            data = base64.b64decode(b64, validate=True)
        except ValueError:  # binascii.Error, or characters outside ASCII
            raise BadRequest("audio is not valid base64", param) from None
        return InputDecoder(self.config.input_format, INPUT_SAMPLE_RATE)(data)

    def _find(self, raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        item_id = raw["item_id"]
        item = self.out.items.get(item_id)
        if item is None:
            raise BadRequest(f"no item with id {item_id!r}", "item_id", "item_not_found")
        return item_id, item

    async def _item_retrieve(self, raw: dict[str, Any], event_id: str | None) -> None:
        _, item = self._find(raw)
        await self.out.emit({"type": "conversation.item.retrieved", "item": item})

    async def _item_delete(self, raw: dict[str, Any], event_id: str | None) -> None:
        item_id, item = self._find(raw)
        place = self.out.places.get(item_id)
        if place is not None:
            if place.uid in self.out.responses or item.get("status") == "in_progress":
                raise BadRequest("the item is still being made", "item_id")
            turn = self.session.turn_messages(place.uid)
            if turn is not None:
                self.session.replace_turn(place.uid, items.without(turn, place))
        del self.out.items[item_id]
        self.out.places.pop(item_id, None)
        await self.out.emit({"type": "conversation.item.deleted", "item_id": item_id})

    async def _item_truncate(self, raw: dict[str, Any], event_id: str | None) -> None:
        item_id, item = self._find(raw)
        place = self.out.places.get(item_id)
        if (
            place is None
            or place.kind != "assistant"
            or item["content"][:1] == []
            or "transcript" not in item["content"][0]
        ):
            raise BadRequest("only an assistant message with audio can be truncated", "item_id")
        if raw["content_index"] != 0:
            raise BadRequest("an assistant message has one content part", "content_index")
        end = raw["audio_end_ms"]
        if end < 0:
            raise BadRequest("audio_end_ms must not be negative", "audio_end_ms")
        self.out.truncating = item_id
        await self.conversation.playback(place.uid, float(end), done=False)
        if self.out.truncating == item_id:  # nothing to cut (all of it was heard, or too old)
            self.out.truncating = None
            await self.out.emit(
                {
                    "type": "conversation.item.truncated",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": end,
                }
            )

    async def _response_create(self, raw: dict[str, Any], event_id: str | None) -> None:
        overrides = check_response(raw.get("response"))
        c = self.conversation
        if c.responding():
            raise BadRequest(
                "Conversation already has an active response in progress.",
                None,
                "conversation_already_has_active_response",
            )
        uid = new_id("u")
        await self.out.start(uid, overrides)  # before the turn can say a word
        if not await c.respond(event_id, uid, self.config.reply_options(overrides)):
            await self.out.finish(uid, "failed")  # refused (``busy``): said in an error

    async def _response_cancel(self, raw: dict[str, Any], event_id: str | None) -> None:
        wanted = raw.get("response_id")
        for uid, r in self.out.responses.items():
            if wanted in (None, r.id):
                await self.conversation.cancel(uid, event_id)
                return
        raise BadRequest(
            "Cancellation failed: no active response found.",
            "response_id",
            "response_cancel_not_active",
        )

    async def _output_clear(self, raw: dict[str, Any], event_id: str | None) -> None:
        """WebRTC's ``output_audio_buffer.clear``: over a WebSocket the client holds the audio;
        taken as "the user took the floor" (stop the reply)."""
        await self.conversation.interrupt(event_id)

    # ------------------------------------------------------------------ closing

    def busy(self) -> bool:
        return self.conversation.busy()

    def idle(self) -> bool:
        return self.conversation.idle()

    async def close_for_shutdown(self) -> None:
        """The server drains: Realtime has no "closing" event, so the close says it (1001,
        "going away"; the OpenAI SDKs surface the code and reason)."""
        with contextlib.suppress(Exception):
            await self.ws.close(code=1001, reason="server shutting down")

    async def close_idle(self) -> None:
        await self.out.error("closing an idle session", "idle_timeout")
        with contextlib.suppress(Exception):
            await self.ws.close(code=1000, reason="idle timeout")


_DELTA = '{"type":"response.output_audio_transcript.delta"'
_HANDLERS = {
    "session.update": RealtimeConnection._session_update,
    "input_audio_buffer.append": None,  # handled first, on the hot path
    "input_audio_buffer.commit": RealtimeConnection._commit,
    "input_audio_buffer.clear": RealtimeConnection._clear,
    "conversation.item.create": RealtimeConnection._item_create,
    "conversation.item.retrieve": RealtimeConnection._item_retrieve,
    "conversation.item.delete": RealtimeConnection._item_delete,
    "conversation.item.truncate": RealtimeConnection._item_truncate,
    "response.create": RealtimeConnection._response_create,
    "response.cancel": RealtimeConnection._response_cancel,
    "output_audio_buffer.clear": RealtimeConnection._output_clear,
}
