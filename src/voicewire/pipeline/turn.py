"""One utterance, end to end: STT -> LLM (with tool rounds) -> TTS, streamed as frames.

Two tasks cooperate. This one transcribes, runs the LLM and its tool rounds, and cuts the
token stream into sentences. The speaker task turns each sentence into audio the moment it
is complete, so the first audio leaves while the LLM is still writing. Every frame goes out
through the ``Emitter``, which stamps ``seq`` and ``ts``; every frame carries this utterance's
id. A failing provider degrades this utterance only: an ``error`` frame says which stage and
why, and the rest of the turn does what it still can (text without audio if TTS fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from voicewire import tracing
from voicewire.logs import current_utterance
from voicewire.pipeline.chunker import SentenceChunker, speakable
from voicewire.pipeline.turn_types import (
    Figure,
    NoTools,
    Speech,
    Tools,
    TurnConfig,
    TurnEmitter,
    TurnRequest,
    TurnUsage,
)
from voicewire.protocol import (
    INPUT_SAMPLE_RATE,
    AssistantText,
    Error,
    ErrorCode,
    LlmComplete,
    LlmStart,
    ProviderFallback,
    StageTimings,
    SttComplete,
    SttStart,
    ToolCallComplete,
    ToolCallStart,
    TtsChunk,
    TtsComplete,
    TtsStart,
    VisualizationData,
    VizComplete,
    VizStart,
    clean_text,
)
from voicewire.providers.base import (
    Fallback,
    LLMEvent,
    Message,
    ProviderError,
    Providers,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
    UsageReport,
    redact,
)
from voicewire.session import Session
from voicewire.tools.registry import ToolError

log = logging.getLogger(__name__)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


class Turn:
    def __init__(
        self,
        request: TurnRequest,
        session: Session,
        providers: Providers,
        emitter: TurnEmitter,
        config: TurnConfig,
        tools: Tools | None = None,
    ) -> None:
        self.req = request
        self.uid = request.record.id
        self.session = session
        self.p = providers
        self.out = emitter
        self.cfg = config
        self.tools = tools or NoTools()
        self.timings = StageTimings()
        self.usage = TurnUsage()
        self.status = "completed"
        self._sentences: asyncio.Queue[Speech | None] = asyncio.Queue()
        self._figures: list[Figure] = []  # made by tools, waiting for the sentence about them
        self._figures_sent = 0
        self._messages: list[Message] = []  # this turn, OpenAI-shaped, for the history
        self._step_text: list[str] = []  # the LLM step being streamed
        self._first_sentence_at: float | None = None
        self._tts_failed = False  # no more audio for this reply: TTS failed or the cap was hit
        self._reply_chars = 0
        self._chunks = 0  # audio chunks sent
        self._samples_out = 0  # audio samples sent: the reply timeline's clock
        self.marks = tracing.Marks() if tracing.enabled() else None  # for its trace

    async def run(self) -> str:
        """Run the turn; return its final status. Cancellation propagates to every sub-task."""
        if self.marks is None:
            return await self._run()
        status = "cancelled"
        try:
            status = await self._run()
            return status
        finally:
            attrs = {
                "voicewire.session_id": self.session.id,
                "voicewire.utterance_id": self.uid,
                "voicewire.status": status,
                "voicewire.ttfa_ms": self.timings.ttfa_ms,
            }
            tracing.export(self.marks, self.req.input_end, attrs)

    async def _run(self) -> str:
        record = self.req.record
        current_utterance.set(record.id)  # log lines of this task and its children name it
        record.status = "running"
        text = self.req.text if self.req.audio is None else await self._transcribe()
        if text is None and self.req.audio is not None:
            return self._finish()  # nothing was heard, or STT failed: said already
        record.transcript = text
        if not self.req.respond:
            added = [{"role": "user", "content": text}] if text else []
            self.session.add_turn([*added, *(self.req.add or [])], self.uid)
            return self._finish()
        speaker = asyncio.create_task(self._speak())
        try:
            reply = await self._think(text)
            await self._sentences.put(None)
            await speaker
        finally:
            if not speaker.done():
                speaker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await speaker
        record.reply = reply
        if reply or any(m["role"] != "user" for m in self._messages):
            self.session.add_turn(self._messages, self.uid)
        return self._finish()

    def spoken_messages(self) -> list[Message]:
        """This turn's messages so far, the step being streamed included: what a turn stopped
        half way (barge-in) had said. Tool calls appear only with their results."""
        messages = list(self._messages)
        if self._step_text and (not messages or messages[-1].get("role") != "assistant"):
            messages.append({"role": "assistant", "content": "".join(self._step_text)})
        return messages

    def _finish(self) -> str:
        self.timings.total_ms = _ms(self.req.input_end)
        self.req.record.timings = self.timings
        self.req.record.status = self.status  # type: ignore[assignment]
        return self.status

    async def _fail(self, code: ErrorCode, stage: str, message: str) -> None:
        if code != ErrorCode.NO_SPEECH:  # operators need provider failures in the log
            log.warning("%s %s: %s failed: %s", self.session.id, self.uid, stage, message)
        self.req.record.error = f"{code}: {message}"
        await self.out.send(Error(utterance_id=self.uid, code=code, stage=stage, message=message))

    async def _fell_back(self, f: Fallback) -> None:
        await self.out.send(
            ProviderFallback(
                utterance_id=self.uid,
                stage=f.stage,  # type: ignore[arg-type]
                failed=f.failed,
                reason=f.reason,
                used=f.used,
            )
        )

    # ------------------------------------------------------------------ STT

    async def _transcribe(self) -> str | None:
        audio = self.req.audio or b""
        audio_ms = round(len(audio) / 2 / INPUT_SAMPLE_RATE * 1000)
        await self.out.send(SttStart(utterance_id=self.uid, audio_ms=audio_ms))
        start = time.perf_counter()
        try:
            if self.req.speculative is not None:
                transcript = await self.req.speculative
            else:
                transcript = await self.p.stt.transcribe(audio, INPUT_SAMPLE_RATE)
        except Exception as exc:  # any provider failure degrades this utterance only
            self.status = "failed"
            await self._fail(ErrorCode.STT_FAILED, "stt", _reason(exc))
            return None
        self.timings.stt_ms = _ms(start)
        if self.marks is not None:
            provider = transcript.provider or self.p.stt.name
            self.marks.add("stt", start, provider=provider, audio_ms=audio_ms)
        for fallback in transcript.fallbacks:
            await self._fell_back(fallback)
        self.usage.add("stt", transcript.provider or self.p.stt.name, transcript.usage)
        text = transcript.text.strip()
        await self.out.send(
            SttComplete(utterance_id=self.uid, text=text, duration_ms=self.timings.stt_ms)
        )
        if not text:
            self.status = "empty"
            await self._fail(ErrorCode.NO_SPEECH, "stt", "no speech was recognised in the audio")
            return None
        return text

    # ------------------------------------------------------------------ LLM and tools

    def _offer(self) -> list[ToolSpec]:
        """The tools this reply may call: the server's and the client's (a client tool of the
        same name replaces the server's), narrowed by ``tool_choice``."""
        options = self.req.options
        if options.tool_choice == "none":
            return []
        theirs = {t.name for t in options.client_tools}
        specs = [s for s in self.tools.specs() if s.name not in theirs]
        specs += options.client_tools
        if options.tool_choice not in ("auto", "required"):
            specs = [s for s in specs if s.name == options.tool_choice]
        return specs

    async def _think(self, user_text: str | None) -> str:
        self._messages = [{"role": "user", "content": user_text}] if user_text else []
        history = self.session.messages()
        if instructions := self.req.options.instructions:
            history = [{"role": "system", "content": instructions}, *history]
        specs = self._offer()
        theirs = {t.name for t in self.req.options.client_tools}
        chunker = SentenceChunker()
        reply: list[str] = []
        await self.out.send(LlmStart(utterance_id=self.uid))
        start = time.perf_counter()
        step_text: list[str] = []
        streamed = False  # the current step's text is in ``reply``
        try:
            for _round in range(self.cfg.max_tool_rounds + 1):
                step_text, streamed = [], False
                self._step_text = step_text
                offer = specs if _round < self.cfg.max_tool_rounds else []
                stream = self.p.llm.stream([*history, *self._messages], offer)
                step_start = time.perf_counter()
                calls = await self._step(stream, start, chunker, step_text)
                if self.marks is not None:
                    self.marks.add(
                        "llm", step_start, provider=self.p.llm.name, round=_round,
                        tool_calls=len(calls),
                    )  # fmt: skip
                reply += step_text
                streamed = True
                if calls and not offer:  # no tools were offered: a call now is not honoured
                    calls = []
                if not calls:
                    if step_text:
                        self._messages.append({"role": "assistant", "content": "".join(step_text)})
                    break
                for sentence in chunker.flush():  # say what came before the tools now
                    self._queue_sentence(sentence)
                self._messages += await self._run_tools(calls, "".join(step_text), theirs)
                if any(c.name in theirs for c in calls):
                    break  # the client runs those: the reply goes on when it sends results
        except Exception as exc:  # the LLM failed: keep what was said, report the rest
            if self.marks is not None:
                self.marks.add("llm", start, provider=self.p.llm.name, error=_reason(exc))
            self.status = "failed"
            await self._fail(ErrorCode.LLM_FAILED, "llm", _reason(exc))
            if not streamed:
                reply += step_text
            if step_text:
                self._messages.append({"role": "assistant", "content": "".join(step_text)})
        self.timings.llm_ms = _ms(start)
        for sentence in chunker.flush():
            self._queue_sentence(sentence)
        if self._figures:  # no sentence came after them: show them where the reply stands
            self._sentences.put_nowait((None, self._take_figures()))
        text = "".join(reply).strip()
        await self.out.send(LlmComplete(utterance_id=self.uid, text=text))
        return text

    async def _step(
        self,
        stream: AsyncIterator[LLMEvent],
        start: float,
        chunker: SentenceChunker,
        step_text: list[str],
    ) -> list[ToolCallRequest]:
        """Stream one LLM step: text to the user and the chunker, tool calls collected.

        A reply that reaches ``max_reply_chars`` is cut there: the stream is closed (which ends
        the provider's request) and the step's tool calls are dropped.
        """
        calls: list[ToolCallRequest] = []
        limit = self.cfg.max_reply_chars
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for event in stream:
                if isinstance(event, TextDelta):
                    if self.timings.llm_ttft_ms is None:
                        self.timings.llm_ttft_ms = _ms(start)
                    delta = clean_text(event.text)[: limit - self._reply_chars]
                    self._reply_chars += len(delta)
                    step_text.append(delta)
                    await self.out.token(self.uid, delta)
                    for sentence in chunker.push(delta):
                        self._queue_sentence(sentence)
                    if self._reply_chars >= limit:
                        await self._truncated("llm", f"the reply reached {limit} characters")
                        return []
                elif isinstance(event, ToolCallRequest):
                    calls.append(event)
                elif isinstance(event, UsageReport):
                    self.usage.add("llm", event.provider or self.p.llm.name, event.usage)
                elif isinstance(event, Fallback):
                    await self._fell_back(event)
        return calls

    async def _truncated(self, stage: str, why: str) -> None:
        """The reply hit a configured cap: say so once; the turn still completes."""
        self.req.record.error = f"{ErrorCode.REPLY_TRUNCATED}: {why}"
        await self.out.send(
            Error(
                utterance_id=self.uid,
                code=ErrorCode.REPLY_TRUNCATED,
                stage=stage,
                message=f"reply cut: {why}",
            )
        )

    async def _run_tools(
        self, calls: list[ToolCallRequest], text: str, theirs: set[str]
    ) -> list[Message]:
        """Run one step's server calls concurrently; one barrier; results return in call order.
        Calls of the client's tools are announced (``client``) and left to the client."""
        start = time.perf_counter()
        for call in calls:
            await self.out.send(
                ToolCallStart(
                    utterance_id=self.uid,
                    call_id=call.call_id,
                    name=call.name,
                    arguments=call.arguments,
                    client=True if call.name in theirs else None,
                )
            )
        mine = [c for c in calls if c.name not in theirs]
        results = await asyncio.gather(*(self._run_tool(c) for c in mine))
        self.usage.tool_calls += len(mine)
        self.timings.tools_ms = round((self.timings.tools_ms or 0) + _ms(start), 2)
        assistant: Message = {
            "role": "assistant",
            "content": text or None,
            "tool_calls": [
                {
                    "id": c.call_id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                }
                for c in calls
            ],
        }
        return [assistant, *results]

    async def _run_tool(self, call: ToolCallRequest) -> Message:
        start = time.perf_counter()
        result: Any = None
        error: str | None = None
        try:
            if call.invalid_arguments is not None:  # the model may correct itself next round
                raise ToolError(f"arguments are not a JSON object: {call.invalid_arguments[:200]}")
            async with asyncio.timeout(self.cfg.tool_timeout_s):
                output = await self.tools.call(call.name, call.arguments)
            # JSON-safe from here on: a tool may return numpy numbers, datetimes, sets...
            result = json.loads(json.dumps(output.result, default=str))
            if output.figure is not None:
                await self._add_figure(Figure(call.call_id, output.figure))
        except TimeoutError:
            error = f"timed out after {self.cfg.tool_timeout_s:g} s"
        except ToolError as exc:
            error = str(exc)
        except Exception as exc:  # a broken tool is that call's error, never the turn's
            error = _reason(exc)
        if self.marks is not None:
            self.marks.add("tool", start, **{"tool.name": call.name, "error": error})
        await self.out.send(
            ToolCallComplete(
                utterance_id=self.uid,
                call_id=call.call_id,
                name=call.name,
                result=result,
                error=error,
                duration_ms=_ms(start),
            )
        )
        content = json.dumps({"error": error} if error else result, default=str)
        return {"role": "tool", "tool_call_id": call.call_id, "content": content}

    # ------------------------------------------------------------------ TTS

    async def _add_figure(self, figure: Figure) -> None:
        if not self._figures and not self._figures_sent:
            await self.out.send(VizStart(utterance_id=self.uid))
        self._figures.append(figure)
        self.session.add_visualization(self.uid, figure.call_id, figure.figure)

    def _take_figures(self) -> list[Figure]:
        figures, self._figures = self._figures, []
        self._figures_sent += len(figures)
        return figures

    def _queue_sentence(self, sentence: str) -> None:
        """Queue a sentence for speech; figures made since the last one are about it."""
        if self._first_sentence_at is None:
            self._first_sentence_at = time.perf_counter()
        self._sentences.put_nowait((sentence, self._take_figures()))

    async def _speak(self) -> None:
        """Turn sentences into audio chunks as they come; place each on the reply timeline."""
        rate = self.p.tts.sample_rate
        max_bytes = int(self.cfg.max_reply_audio_s * rate) * 2
        while (item := await self._sentences.get()) is not None:
            sentence, figures = item
            words = speakable(sentence) if sentence is not None else ""
            if not words or self._tts_failed or not self.req.options.speak:
                offset = None if self._tts_failed else self._offset_ms(rate)
                if sentence is not None:
                    await self.out.send(AssistantText(utterance_id=self.uid, text=sentence))
                await self._show(figures, offset)
                continue
            caption: str | None = sentence  # sent with the sentence's first chunk
            pending = b""
            cut = False
            try:
                stream = self.p.tts.synthesize(words)
                async with contextlib.aclosing(stream):  # type: ignore[type-var]
                    async for pcm in stream:
                        if isinstance(pcm, UsageReport):
                            self.usage.add("tts", pcm.provider or self.p.tts.name, pcm.usage)
                            continue
                        if isinstance(pcm, Fallback):
                            await self._fell_back(pcm)
                            continue
                        pending += pcm
                        room = max_bytes - self._samples_out * 2
                        if len(pending) >= room:  # the reply's audio cap: stop synthesis here
                            pending, cut = pending[:room], True
                        while len(pending) >= (size := self._chunk_bytes(rate)):
                            await self._play(caption, figures, pending[:size], rate)
                            pending, caption = pending[size:], None
                        if cut:
                            break
                tail = pending[: len(pending) - len(pending) % 2]
                if tail:
                    await self._play(caption, figures, tail, rate)
                    caption = None
                if cut:
                    self._tts_failed = True  # the rest of the reply goes out as text
                    limit = f"{self.cfg.max_reply_audio_s:g} s"
                    await self._truncated("tts", f"the reply's audio reached {limit}")
            except Exception as exc:
                self._tts_failed = True
                if self.status == "completed":
                    self.status = "failed"
                await self._fail(ErrorCode.TTS_FAILED, "tts", _reason(exc))
            if caption is not None:  # no audio for it: the words still reach the user
                offset = self._offset_ms(rate) if not self._tts_failed else None
                await self.out.send(
                    AssistantText(utterance_id=self.uid, text=caption, offset_ms=offset)
                )
                await self._show(figures, offset)
        if self._chunks:
            await self.out.send(TtsComplete(utterance_id=self.uid, audio_ms=self._offset_ms(rate)))
        if self._figures_sent:
            await self.out.send(VizComplete(utterance_id=self.uid, count=self._figures_sent))

    async def _show(self, figures: list[Figure], offset_ms: float | None) -> None:
        for f in figures:
            await self.out.send(
                VisualizationData(
                    utterance_id=self.uid, call_id=f.call_id, figure=f.figure, offset_ms=offset_ms
                )
            )

    def _chunk_bytes(self, rate: int) -> int:
        """The next audio chunk's size: ``tts_chunk_ms`` first (first audio goes at once),
        then as long as the audio already sent, up to ``tts_max_chunk_ms``. Fewer frames per
        reply, and the client always holds more than the next chunk takes to fill."""
        first = rate * self.cfg.tts_chunk_ms // 1000
        most = max(first, rate * self.cfg.tts_max_chunk_ms // 1000)
        return max(2, 2 * min(most, max(first, self._samples_out)))

    def _offset_ms(self, rate: int) -> float:
        return round(self._samples_out * 1000 / rate, 2)

    async def _play(
        self, caption: str | None, figures: list[Figure], pcm: bytes, rate: int
    ) -> None:
        """Send one audio chunk; before a sentence's first chunk, its text and its figures."""
        if self._chunks == 0:
            await self.out.send(TtsStart(utterance_id=self.uid, sample_rate=rate))
        offset_ms = self._offset_ms(rate)
        if caption is not None:
            await self.out.send(
                AssistantText(utterance_id=self.uid, text=caption, offset_ms=offset_ms)
            )
            await self._show(figures, offset_ms)
        samples = len(pcm) // 2
        header = TtsChunk(
            utterance_id=self.uid,
            chunk_index=self._chunks,
            offset_ms=offset_ms,
            samples=samples,
            sample_rate=rate,
        )
        await self.out.send_audio(header, pcm)
        if self._chunks == 0:
            self.timings.ttfa_ms = _ms(self.req.input_end)
            if self._first_sentence_at is not None:
                self.timings.tts_ttfb_ms = _ms(self._first_sentence_at)
                if self.marks is not None:
                    self.marks.add(
                        "tts.first_byte", self._first_sentence_at, provider=self.p.tts.name
                    )
        self._chunks += 1
        self._samples_out += samples


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ProviderError):
        return str(exc)
    return redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
