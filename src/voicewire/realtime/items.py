"""Realtime conversation items and the chat messages the conversation core keeps.

The core's history is OpenAI Chat Completions messages filed by utterance; the Realtime
protocol sees the same conversation as items with ids. Items are built here (as the
``openai`` SDK's ``ConversationItem`` models define them), client items are turned into
messages, and a deleted item is taken out of the messages it became.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from voicewire.providers.base import Message
from voicewire.realtime.config import BadRequest

Kind = Literal["user", "assistant", "system", "function_call", "function_call_output"]


def new_id(prefix: str = "item") -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(slots=True)
class Place:
    """Where an item lives in the core's history: the utterance it is filed under."""

    uid: str
    kind: Kind
    call_id: str | None = None


def _item(item_id: str, status: str, **fields: Any) -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "status": status, **fields}


def user_audio(item_id: str, transcript: str | None) -> dict[str, Any]:
    content = [{"type": "input_audio", "transcript": transcript}]
    return _item(item_id, "completed", type="message", role="user", content=content)


def assistant(item_id: str, status: str, speak: bool, text: str | None) -> dict[str, Any]:
    part = (
        {"type": "output_audio", "transcript": text}
        if speak
        else {"type": "output_text", "text": text}
    )
    content = [part] if text is not None else []
    return _item(item_id, status, type="message", role="assistant", content=content)


def function_call(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return _item(
        item_id, status, type="function_call", call_id=call_id, name=name, arguments=arguments
    )


# ----------------------------------------------------------------------------- client items


@dataclass(slots=True)
class ClientItem:
    """A ``conversation.item.create``'s item, checked: the messages it adds, or the audio to
    transcribe first (PCM in the session's input format, still encoded)."""

    item: dict[str, Any]
    kind: Kind
    messages: list[Message]
    audio: bytes | None = None
    call_id: str | None = None


def client_item(raw: dict[str, Any], audio_of: Any) -> ClientItem:
    """``raw`` was validated by the SDK's model; ``audio_of`` decodes a base64 audio part."""
    kind = raw.get("type")
    item_id = raw.get("id") or new_id()
    if kind == "function_call_output":
        call_id, output = raw["call_id"], raw["output"]
        item = _item(item_id, "completed", type=kind, call_id=call_id, output=output)
        message = {"role": "tool", "tool_call_id": call_id, "content": output}
        return ClientItem(item, "function_call_output", [message], call_id=call_id)
    if kind == "function_call":
        call_id = raw.get("call_id") or new_id("call")
        arguments = raw.get("arguments") or "{}"
        item = function_call(item_id, call_id, raw["name"], arguments, "completed")
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": raw["name"], "arguments": arguments},
        }
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return ClientItem(item, "function_call", [message], call_id=call_id)
    role = raw.get("role")
    parts = raw.get("content") or []
    texts: list[str] = []
    audio = b""
    for i, part in enumerate(parts):
        ptype = part.get("type")
        if ptype in ("input_text", "text", "output_text"):
            texts.append(part.get("text") or "")
        elif ptype == "input_audio" and role == "user":
            audio += audio_of(part.get("audio") or "", f"item.content[{i}].audio")
        else:
            raise BadRequest(
                f"content of type {ptype!r} is not supported", f"item.content[{i}].type"
            )
    if audio and texts:
        raise BadRequest("a user item holds text or audio, not both", "item.content")
    content = [dict(p) for p in parts]
    for part in content:
        part.pop("audio", None)  # kept as its transcript, not as audio
    item = _item(item_id, "completed", type="message", role=role, content=content)
    if audio:
        part_kind: Kind = "user"
        return ClientItem(item, part_kind, [], audio=audio)
    text = "".join(texts)
    if not text.strip():
        raise BadRequest("the item has no text", "item.content")
    return ClientItem(item, role, [{"role": role, "content": text}])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- deletion


def without(messages: list[Message], place: Place) -> list[Message]:
    """An utterance's messages without the item at ``place``."""
    out: list[Message] = []
    for m in messages:
        role = m.get("role")
        if place.kind in ("user", "system") and role == place.kind:
            continue
        if place.kind == "assistant" and role == "assistant":
            if not m.get("tool_calls"):
                continue
            m = {**m, "content": None}
        if place.kind == "function_call" and role == "assistant" and m.get("tool_calls"):
            calls = [c for c in m["tool_calls"] if c.get("id") != place.call_id]
            if not calls and not m.get("content"):
                continue
            m = (
                {**m, "tool_calls": calls}
                if calls
                else {"role": "assistant", "content": m["content"]}
            )
        ours = place.kind in ("function_call", "function_call_output")
        if ours and role == "tool" and m.get("tool_call_id") == place.call_id:
            continue
        out.append(m)
    return out


def arguments_json(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, separators=(",", ":"))
