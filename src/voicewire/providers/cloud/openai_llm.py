"""Chat Completions LLM: OpenAI, or any OpenAI-compatible server (Ollama, vLLM, llama.cpp).

Text deltas go to the turn the moment they arrive, so TTS starts on the first sentence while
the model is still writing. Tool calls arrive as fragments spread over many SSE chunks; the
:class:`ToolCallAssembler` puts them together and they are handed over when the step ends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI, AsyncStream

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
from voicewire.providers.cloud import net


@dataclass(slots=True)
class _Call:
    id: str
    name: str = ""
    parts: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Assemble streamed ``delta.tool_calls`` fragments into whole calls, in order.

    OpenAI sends ``id`` and ``name`` on a call's first fragment and only ``index`` plus
    argument pieces after it. Compatible servers differ: some send a whole call in one delta,
    some reuse ``index`` 0 for every call of a parallel batch, some repeat the ``id`` on every
    fragment. So calls are keyed by index, and a new, different ``id`` at a used index starts
    a new call.
    """

    def __init__(self) -> None:
        self._calls: list[_Call] = []
        self._by_index: dict[int, _Call] = {}

    def add(
        self, index: int | None, call_id: str | None, name: str | None, args: str | None
    ) -> None:
        index = index or 0
        current = self._by_index.get(index)
        if current is None or (call_id and call_id != current.id):
            current = _Call(call_id or f"call_{len(self._calls)}")
            self._calls.append(current)
            self._by_index[index] = current
        if name:
            current.name = name
        if args:
            current.parts.append(args)

    def finish(self) -> list[ToolCallRequest]:
        out = []
        for call in self._calls:
            raw = "".join(call.parts).strip()
            try:
                arguments = json.loads(raw) if raw else {}
                invalid = None if isinstance(arguments, dict) else raw
            except ValueError:
                arguments, invalid = {}, raw
            out.append(
                ToolCallRequest(call.id, call.name, arguments if not invalid else {}, invalid)
            )
        return out


class OpenAILLM:
    """Streams one completion step; usage comes from ``stream_options.include_usage``."""

    def __init__(
        self,
        name: str,
        client: AsyncOpenAI,
        model: str,
        policy: net.NetPolicy,
        system_prompt: str | None = None,
        max_tokens: int | None = None,
        compatible: bool = False,
        reasoning_effort: str | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.model = model
        self.policy = policy
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self.compatible = compatible
        if reasoning_effort is None and not compatible and model.startswith("gpt-6"):
            reasoning_effort = "none"  # gpt-6 models call tools in Chat Completions only so
        self.reasoning_effort = reasoning_effort

    def _request(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [*system, *messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = [t.openai_schema() for t in tools]
        if self.reasoning_effort:
            body["reasoning_effort"] = self.reasoning_effort
        if self.max_tokens:
            # compatible servers know the older name; OpenAI deprecated it
            body["max_tokens" if self.compatible else "max_completion_tokens"] = self.max_tokens
        return body

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[LLMEvent]:
        body = self._request(messages, tools)

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            # The client's generic post: the same request, auth, errors and SSE decoding as
            # ``chat.completions.create``, but the body is not re-walked through its type
            # annotations and chunks stay plain dicts (``object``), not pydantic models: the
            # two cost ~25 % of a turn's CPU (benchmarks/cloud_overhead.py).
            response = await self.client.post(
                "/chat/completions",
                body=body,
                cast_to=object,
                stream=True,
                stream_cls=AsyncStream[object],
            )
            async with response:
                async for chunk in response:
                    yield chunk  # type: ignore[misc]

        reader = ChunkReader()
        async for chunk in net.stream(self.name, self.policy, chunks):
            for event in reader.read(chunk):
                yield event
        if not reader.finished:  # the stream ended without saying the reply was complete
            raise ProviderError(self.name, "the reply stream ended early (no finish_reason)")
        for request in reader.calls.finish():
            yield request


class ChunkReader:
    """Events from ``chat.completion.chunk`` objects (plain dicts, as they are on the wire).

    Shared by every provider that streams OpenAI-shaped chunks (this adapter, llama-cpp).
    """

    def __init__(self) -> None:
        self.calls = ToolCallAssembler()
        self.finished = False

    def read(self, chunk: dict[str, Any]) -> list[LLMEvent]:
        if not isinstance(chunk, dict):
            raise ValueError(f"a stream chunk is not an object: {str(chunk)[:80]}")
        events: list[LLMEvent] = []
        if usage := chunk.get("usage"):
            details = usage.get("prompt_tokens_details") or {}
            events.append(
                UsageReport(
                    Usage(
                        input_tokens=usage.get("prompt_tokens") or 0,
                        cached_tokens=details.get("cached_tokens") or 0,
                        output_tokens=usage.get("completion_tokens") or 0,
                    )
                )
            )
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if text := delta.get("content"):
                events.append(TextDelta(text))
            for tc in delta.get("tool_calls") or []:
                fn = tc.get("function") or {}
                self.calls.add(tc.get("index"), tc.get("id"), fn.get("name"), fn.get("arguments"))
            if choice.get("finish_reason"):
                self.finished = True
        return events
