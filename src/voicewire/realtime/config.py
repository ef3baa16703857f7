"""A Realtime session's configuration: ``session.update`` checked against the ``openai`` SDK's
own models, applied, and shown back as the session object.

Fields of the protocol that voicewire does not act on are accepted and shown back as given
(``docs/realtime.md`` lists them); fields the protocol does not have are an error, as with
OpenAI, and so is a value voicewire cannot honour (an MCP tool, a transcription session).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from openai.types.realtime import (
    RealtimeAudioConfig,
    RealtimeAudioConfigInput,
    RealtimeAudioConfigOutput,
    RealtimeSessionCreateRequest,
)
from openai.types.realtime.realtime_audio_input_turn_detection import SemanticVad, ServerVad
from pydantic import BaseModel, ValidationError

from voicewire.pipeline.turn_types import ReplyOptions
from voicewire.providers.base import ToolSpec
from voicewire.realtime.codec import AudioFormat

# semantic_vad's eagerness -> the longest silence a turn whose words sound unfinished waits
EAGERNESS_MAX_SILENCE_MS = {"low": 2400, "medium": None, "auto": None, "high": 700}


class BadRequest(Exception):
    """An ``invalid_request_error``: the client's event is refused and the session goes on."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value"):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(slots=True)
class TurnTaking:
    """What the conversation core is told (``Conversation.update``)."""

    mode: str  # "server_vad" or "manual"
    silence_ms: int
    max_silence_ms: int
    barge_in: bool
    auto_respond: bool


@dataclass(slots=True)
class RealtimeConfig:
    model: str
    silence_ms: int  # the server's defaults, for the fields a client leaves out
    max_silence_ms: int
    instructions: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    input_format: AudioFormat = field(default_factory=AudioFormat)
    output_format: AudioFormat = field(default_factory=AudioFormat)
    voice: str = "alloy"
    speed: float = 1.0
    transcription: dict[str, Any] | None = None
    noise_reduction: dict[str, Any] | None = None
    turn_detection: dict[str, Any] | None = None
    max_output_tokens: int | str = "inf"
    ignored: dict[str, Any] = field(default_factory=dict)  # accepted, shown back, not acted on

    def __post_init__(self) -> None:
        if self.turn_detection is None:
            self.turn_detection = self._detection({"type": "semantic_vad"})

    # ------------------------------------------------------------------ out

    def describe(self, session_id: str) -> dict[str, Any]:
        """The session object of ``session.created`` / ``session.updated``."""
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": self.model,
            "output_modalities": self.output_modalities,
            "instructions": self.instructions,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "max_output_tokens": self.max_output_tokens,
            "audio": {
                "input": {
                    "format": self.input_format.describe(),
                    "transcription": self.transcription,
                    "noise_reduction": self.noise_reduction,
                    "turn_detection": self.turn_detection,
                },
                "output": {
                    "format": self.output_format.describe(),
                    "voice": self.voice,
                    "speed": self.speed,
                },
            },
            **self.ignored,
        }

    def reply_options(self, overrides: dict[str, Any] | None = None) -> ReplyOptions:
        """How the core makes replies, from the session and one ``response.create``'s
        overrides (already checked by :func:`check_response`)."""
        o = overrides or {}
        tools = o.get("tools", self.tools)
        modalities = o.get("output_modalities", self.output_modalities)
        return ReplyOptions(
            instructions=o.get("instructions", self.instructions) or "",
            client_tools=tuple(_spec(t) for t in tools),
            tool_choice=_choice(o.get("tool_choice", self.tool_choice)),
            speak="audio" in modalities,
        )

    def turn_taking(self) -> TurnTaking:
        td = self.turn_detection
        if td is None:  # the client commits and asks for responses itself
            return TurnTaking("manual", self.silence_ms, 0, True, False)
        barge_in = td.get("interrupt_response") is not False
        respond = td.get("create_response") is not False
        if td["type"] == "server_vad":  # a fixed silence, as the client asked
            return TurnTaking("server_vad", td["silence_duration_ms"], 0, barge_in, respond)
        longest = EAGERNESS_MAX_SILENCE_MS.get(td.get("eagerness") or "auto") or self.max_silence_ms
        return TurnTaking("server_vad", self.silence_ms, longest, barge_in, respond)

    # ------------------------------------------------------------------ in

    def update(self, raw: Any) -> None:
        """Apply a ``session.update``'s ``session``; on a :class:`BadRequest` nothing changed."""
        if not isinstance(raw, dict):
            raise BadRequest("session must be an object", "session")
        _unknown(raw, RealtimeSessionCreateRequest, "session")
        audio = raw.get("audio")
        if isinstance(audio, dict):
            _unknown(audio, RealtimeAudioConfig, "session.audio")
            for part, model in (
                ("input", RealtimeAudioConfigInput),
                ("output", RealtimeAudioConfigOutput),
            ):
                if isinstance(audio.get(part), dict):
                    _unknown(audio[part], model, f"session.audio.{part}")
        if raw.get("type", "realtime") != "realtime":
            raise BadRequest("only realtime sessions are served here", "session.type")
        try:
            RealtimeSessionCreateRequest.model_validate({"type": "realtime", **raw})
        except ValidationError as exc:
            raise _bad(exc, "session") from None
        new = _copy(self)
        new._apply(raw)
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(new, name))

    def _apply(self, raw: dict[str, Any]) -> None:
        if raw.get("model"):
            self.model = raw["model"]
        if "instructions" in raw:
            self.instructions = raw["instructions"] or ""
        if "tools" in raw:
            self.tools = check_tools(raw["tools"] or [], "session.tools")
        if "tool_choice" in raw:
            self.tool_choice = raw["tool_choice"] or "auto"
        if "output_modalities" in raw:
            self.output_modalities = check_modalities(raw["output_modalities"], "session")
        if "max_output_tokens" in raw:
            self.max_output_tokens = raw["max_output_tokens"]
        for name in (
            "include",
            "prompt",
            "tracing",
            "truncation",
            "reasoning",
            "parallel_tool_calls",
        ):
            if name in raw:
                self.ignored[name] = raw[name]
        audio = raw.get("audio") or {}
        given_in = audio.get("input") or {}
        given_out = audio.get("output") or {}
        if given_in.get("format"):
            self.input_format = AudioFormat(given_in["format"].get("type") or "audio/pcm")
        if "transcription" in given_in:
            self.transcription = given_in["transcription"]
        if "noise_reduction" in given_in:
            self.noise_reduction = given_in["noise_reduction"]
        if "turn_detection" in given_in:
            td = given_in["turn_detection"]
            self.turn_detection = None if td is None else self._detection(td)
        if given_out.get("format"):
            self.output_format = AudioFormat(given_out["format"].get("type") or "audio/pcm")
        if given_out.get("voice"):
            voice = given_out["voice"]
            self.voice = voice if isinstance(voice, str) else json.dumps(voice)
        if given_out.get("speed") is not None:
            if not 0.25 <= given_out["speed"] <= 1.5:  # OpenAI's documented range
                raise BadRequest("speed must be between 0.25 and 1.5", "session.audio.output.speed")
            self.speed = given_out["speed"]

    def _detection(self, td: dict[str, Any]) -> dict[str, Any]:
        """Turn detection with the server's values for what the client left out."""
        if td.get("type") == "server_vad":
            model: type[BaseModel] = ServerVad
            defaults = {
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": self.silence_ms,
                "idle_timeout_ms": None,
            }
        else:
            model = SemanticVad
            defaults = {"eagerness": "auto"}
        _unknown(td, model, "session.audio.input.turn_detection")
        given = {k: v for k, v in td.items() if v is not None}
        return {**defaults, "create_response": True, "interrupt_response": True, **given}


def check_tools(tools: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list", param)
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
            raise BadRequest(
                f"only function tools are supported, not {kind!r}", f"{param}[{i}].type"
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise BadRequest("a function tool needs a name (1-64 characters)", f"{param}[{i}].name")
        if name in names:
            raise BadRequest(f"tool {name!r} is declared twice", f"{param}[{i}].name")
        names.add(name)
        if not isinstance(tool.get("parameters", {}), dict):
            raise BadRequest("parameters must be a JSON schema object", f"{param}[{i}].parameters")
    return [dict(t, type="function") for t in tools]


def check_modalities(modalities: Any, where: str) -> list[str]:
    if not isinstance(modalities, list) or not modalities:
        raise BadRequest(
            "output_modalities must be ['audio'] or ['text']", f"{where}.output_modalities"
        )
    if len(set(modalities)) != 1 or modalities[0] not in ("audio", "text"):
        raise BadRequest(
            "output_modalities must be ['audio'] or ['text']", f"{where}.output_modalities"
        )
    return list(modalities)


def _spec(tool: dict[str, Any]) -> ToolSpec:
    parameters = tool.get("parameters") or {"type": "object", "properties": {}}
    return ToolSpec(tool["name"], tool.get("description") or "", parameters)


def _choice(choice: str | dict[str, Any]) -> str:
    if isinstance(choice, dict):
        return str(choice.get("name") or "auto")
    return choice or "auto"


def _unknown(raw: dict[str, Any], model: type[BaseModel], where: str) -> None:
    """OpenAI refuses a parameter it does not know; so do we (a typo should be seen)."""
    for key in raw:
        if key not in model.model_fields:
            raise BadRequest(
                f"Unknown parameter: '{where}.{key}'.", f"{where}.{key}", "unknown_parameter"
            )


def _bad(exc: ValidationError, where: str) -> BadRequest:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "tagged-")))
    param = f"{where}.{loc}" if loc else where
    return BadRequest(f"Invalid value for '{param}': {err['msg']}", param)


def _copy(config: RealtimeConfig) -> RealtimeConfig:
    """A deep enough copy to apply an update to and throw away if it fails."""
    new = RealtimeConfig.__new__(RealtimeConfig)
    for name in config.__slots__:  # type: ignore[attr-defined]
        value = getattr(config, name)
        setattr(
            new, name, json.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value
        )
    return new


def check_response(raw: Any) -> dict[str, Any]:
    """A ``response.create``'s ``response``: the overrides honoured for that response. Those
    voicewire cannot honour are refused (an out-of-band response, custom input)."""
    from openai.types.realtime import RealtimeResponseCreateParams

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("response must be an object", "response")
    _unknown(raw, RealtimeResponseCreateParams, "response")
    try:
        RealtimeResponseCreateParams.model_validate(raw)
    except ValidationError as exc:
        raise _bad(exc, "response") from None
    if raw.get("conversation", "auto") not in ("auto", None):
        raise BadRequest(
            "out-of-band responses are not supported: conversation must be 'auto'",
            "response.conversation",
        )
    if raw.get("input") is not None:
        raise BadRequest("custom response input is not supported", "response.input")
    out: dict[str, Any] = {}
    if raw.get("instructions") is not None:
        out["instructions"] = raw["instructions"]
    if raw.get("tools") is not None:
        out["tools"] = check_tools(raw["tools"], "response.tools")
    if raw.get("tool_choice") is not None:
        out["tool_choice"] = raw["tool_choice"]
    if raw.get("output_modalities") is not None:
        out["output_modalities"] = check_modalities(raw["output_modalities"], "response")
    if raw.get("metadata") is not None:
        out["metadata"] = raw["metadata"]
    return out
