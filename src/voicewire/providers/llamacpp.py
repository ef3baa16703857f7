"""In-process LLM on a user's GGUF file, through ``llama-cpp-python`` (optional extra).

Generation runs in the shared :class:`ModelRunner` pool, never on the event loop; its chunks
cross to the loop through a queue as they are made, so the first sentence is spoken while the
model is still writing. llama.cpp's context is not thread-safe, so one model generates for one
utterance at a time (others queue). Chunks are OpenAI-shaped, so tool calls go through the
same :class:`ChunkReader` as the Chat Completions adapter; whether a model calls tools
depends on its chat template.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicewire.providers.base import (
    LLMEvent,
    Message,
    ProviderError,
    ToolSpec,
    Usage,
    UsageReport,
)
from voicewire.providers.cloud.openai_llm import ChunkReader
from voicewire.providers.runner import ModelRunner


@dataclass(slots=True)
class _Done:
    prompt_tokens: int
    output_tokens: int


class LlamaCppLLM:
    def __init__(
        self,
        path: Path,
        runner: ModelRunner,
        system_prompt: str | None = None,
        threads: int = 2,
        context: int = 4096,
        max_tokens: int | None = None,
    ) -> None:
        from llama_cpp import Llama

        self.name = f"llama-cpp:{path.name}"
        self.runner = runner
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens or 512
        self._llm = Llama(model_path=str(path), n_ctx=context, n_threads=threads, verbose=False)
        self._lock = threading.Lock()

    def _generate(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        emit: Any,
        stop: threading.Event,
    ) -> None:
        with self._lock:
            text: list[str] = []
            chunks = self._llm.create_chat_completion(
                messages, tools=tools, max_tokens=self.max_tokens, stream=True
            )
            for chunk in chunks:
                if stop.is_set():
                    break
                for choice in chunk.get("choices", []):
                    text.append((choice.get("delta") or {}).get("content") or "")
                emit(chunk)
            # llama.cpp reports no usage when streaming: the context now holds prompt + reply
            reply = "".join(text).encode()
            output = len(self._llm.tokenize(reply, add_bos=False, special=True)) if reply else 0
            emit(_Done(max(0, self._llm.n_tokens - output), output))

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[LLMEvent]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        # chat templates print content verbatim: a missing one (tool-call turns) is empty text
        msgs = [{**m, "content": m.get("content") or ""} for m in [*system, *messages]]
        schemas = [t.openai_schema() for t in tools] or None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        work = asyncio.ensure_future(self.runner.run(self._generate, msgs, schemas, emit, stop))
        work.add_done_callback(lambda f: f.cancelled() or f.exception() is None or emit(None))
        reader = ChunkReader()
        try:
            while True:
                item = await queue.get()
                if item is None:  # the generation raised; its exception is on ``work``
                    exc = work.exception()
                    raise ProviderError(self.name, f"generation failed: {exc}") from exc
                if isinstance(item, _Done):
                    _, cpu = await work
                    yield UsageReport(
                        Usage(
                            input_tokens=item.prompt_tokens,
                            output_tokens=item.output_tokens,
                            cpu_seconds=cpu,
                        )
                    )
                    break
                for event in reader.read(item):
                    yield event
        finally:
            stop.set()  # a cancelled turn stops the model at its next token
        for request in reader.calls.finish():
            yield request
