"""A fake OpenAI + ElevenLabs API on loopback, speaking their documented wire formats.

Served by real uvicorn, so adapters go through real HTTP: SSE framing (``data: ...`` lines,
blank-line separators, ``[DONE]``), chunked audio bodies, multipart uploads, auth headers and
error bodies are all the real thing (``../shared/reference/providers.md`` sections 1-3).
Tests script what each route does next: a normal answer or a fault (status with headers, a
stream cut after N events, a malformed event, a first byte that never comes).
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import wave
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

OPENAI_KEY = "sk-test-fake"
# The standalone server's reply: two sentences, 27 words (a typical spoken answer).
REPLY = (
    "Sure. The forecast for Paris is sunny with a high of twenty degrees, and a light "
    "breeze will pick up in the afternoon before it clears again at night."
)
ELEVEN_KEY = "xi-test-fake"


@dataclass
class Fault:
    status: int | None = None  # answer with this status and an error body
    headers: dict[str, str] = field(default_factory=dict)
    code: str | None = None  # error.code, e.g. insufficient_quota
    cut_after: int | None = None  # stream this many events/chunks, then drop the connection
    end_after: int | None = None  # stream this many events, then end the body cleanly
    malformed_at: int | None = None  # replace event N with a line that is not JSON
    error_at: int | None = None  # replace event N with an in-stream {"error": ...} event
    hang: bool = False  # send the headers, then no body until the test ends


@dataclass
class Pace:
    """Provider latency to imitate (benchmarks): first event, then between events."""

    first_s: float = 0.0  # chat: time to first token; speech: time to first audio byte
    chat_token_s: float = 0.0


@dataclass
class Step:
    """One scripted chat completion: text pieces, then tool calls (name, arguments JSON)."""

    text: list[str] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    prompt_tokens: int = 91
    completion_tokens: int = 38
    cached_tokens: int = 0


@dataclass
class Seen:
    path: str
    at: float
    headers: dict[str, str]
    body: Any  # JSON body, or the multipart form as a dict (files as (name, type, bytes))


class FakeCloud:
    def __init__(self) -> None:
        self.faults: dict[str, deque[Fault]] = {}
        self.steps: deque[Step] = deque()
        self.transcript = "show me a bar chart of sales"
        self.seen: list[Seen] = []
        self.pace = {"chat": Pace(), "speech": Pace(), "el_tts": Pace()}
        self.default_step = Step(text=["Hello", " there."])
        self._hung: list[asyncio.Event] = []
        self.abandoned = threading.Event()  # a client closed a request the fake was hanging
        self.arrived = threading.Event()  # set by every request
        self._loop: asyncio.AbstractEventLoop | None = None
        self.app = self._build()

    # ---------------------------------------------------------------- scripting

    def fault(self, route: str, *faults: Fault) -> None:
        """Queue faults for a route: chat, transcriptions, speech, el_tts, el_stt."""
        self.faults.setdefault(route, deque()).extend(faults)

    def reply(self, *steps: Step) -> None:
        self.steps.extend(steps)

    def requests(self, path_part: str) -> list[Seen]:
        return [s for s in self.seen if path_part in s.path]

    def release(self) -> None:
        """Let hung responses finish (the server cannot stop while one hangs)."""
        if self._loop is not None:
            for event in self._hung:
                self._loop.call_soon_threadsafe(event.set)

    def _next_fault(self, route: str) -> Fault | None:
        queue = self.faults.get(route)
        return queue.popleft() if queue else None

    # ---------------------------------------------------------------- app

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await self._record(request)
            if (denied := self._openai_auth(request)) is not None:
                return denied
            fault = self._next_fault("chat")
            if fault and fault.status:
                return _openai_error(fault)
            step = self.steps.popleft() if self.steps else self.default_step
            events = _chat_events(body["model"], step, body.get("stream_options"))
            return self._stream(events, fault, "text/event-stream", self.pace["chat"], sse=True)

        @app.get("/v1/models")
        async def models(request: Request) -> Response:
            self.seen.append(Seen(request.url.path, time.monotonic(), dict(request.headers), None))
            if "xi-api-key" in request.headers:  # ElevenLabs' GET /v1/models
                if request.headers["xi-api-key"] != ELEVEN_KEY:
                    return _eleven_error(Fault(status=401, code="invalid_api_key"))
                return JSONResponse(
                    [{"model_id": "eleven_flash_v2_5", "can_do_text_to_speech": True}]
                )
            if (denied := self._openai_auth(request)) is not None:
                return denied
            return JSONResponse(
                {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}
            )

        @app.post("/v1/audio/transcriptions")
        async def transcriptions(request: Request) -> Response:
            await self._record(request)
            if (denied := self._openai_auth(request)) is not None:
                return denied
            fault = self._next_fault("transcriptions")
            if fault and fault.status:
                return _openai_error(fault)
            return JSONResponse(
                {"text": self.transcript, "usage": {"type": "duration", "seconds": 2}}
            )

        @app.post("/v1/audio/speech")
        async def speech(request: Request) -> Response:
            body = await self._record(request)
            if (denied := self._openai_auth(request)) is not None:
                return denied
            fault = self._next_fault("speech")
            if fault and fault.status:
                return _openai_error(fault)
            assert body["response_format"] == "pcm"
            chunks = _pcm_chunks(body["input"], 24_000)
            return self._stream(chunks, fault, "audio/pcm", self.pace["speech"])

        @app.post("/v1/text-to-speech/{voice_id}/stream")
        async def el_tts(voice_id: str, request: Request) -> Response:
            body = await self._record(request)
            if request.headers.get("xi-api-key") != ELEVEN_KEY:
                return _eleven_error(Fault(status=401, code="invalid_api_key"))
            fault = self._next_fault("el_tts")
            if fault and fault.status:
                return _eleven_error(fault)
            rate = int(request.query_params["output_format"].removeprefix("pcm_"))
            audio = _pcm_chunks(body["text"], rate)
            return self._stream(audio, fault, "audio/pcm", self.pace["el_tts"])

        @app.post("/v1/speech-to-text")
        async def el_stt(request: Request) -> Response:
            form = await self._record(request)
            if request.headers.get("xi-api-key") != ELEVEN_KEY:
                return _eleven_error(Fault(status=401, code="invalid_api_key"))
            fault = self._next_fault("el_stt")
            if fault and fault.status:
                return _eleven_error(fault)
            _, _, audio = form["file"]
            seconds = len(audio) / 2 / 16_000  # file_format=pcm_s16le_16
            return JSONResponse(
                {
                    "language_code": "en",
                    "language_probability": 0.98,
                    "text": self.transcript,
                    "words": [{"text": w, "type": "word"} for w in self.transcript.split()],
                    "audio_duration_secs": seconds,
                }
            )

        return app

    async def _record(self, request: Request) -> Any:
        self._loop = asyncio.get_running_loop()
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            body: Any = {}
            for key, value in form.multi_items():
                if hasattr(value, "read"):
                    body[key] = (value.filename, value.content_type, await value.read())
                else:
                    body[key] = value
        else:
            body = json.loads(await request.body())
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.seen.append(Seen(request.url.path, time.monotonic(), headers, body))
        self.arrived.set()
        return body

    def _openai_auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") == f"Bearer {OPENAI_KEY}":
            return None
        return _openai_error(Fault(status=401, code="invalid_api_key"))

    def _stream(
        self,
        items: list[bytes],
        fault: Fault | None,
        media_type: str,
        pace: Pace,
        sse: bool = False,
    ) -> StreamingResponse:
        hang = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            if fault and fault.hang:
                self._hung.append(hang)
                try:
                    await hang.wait()
                finally:
                    if not hang.is_set():  # the client went away while we hung
                        self.abandoned.set()
                return
            for i, item in enumerate(items):
                if fault and fault.cut_after is not None and i == fault.cut_after:
                    raise ConnectionAbortedError("fault: connection dropped mid-stream")
                if fault and fault.end_after is not None and i == fault.end_after:
                    return
                if fault and fault.malformed_at == i and sse:
                    item = b'data: {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {\n\n'
                if fault and fault.error_at == i and sse:
                    error = {"message": "The server is overloaded.", "type": "server_error"}
                    item = f"data: {json.dumps({'error': error})}\n\n".encode()
                if i == (1 if sse else 0) and pace.first_s:  # after the role chunk / headers
                    await asyncio.sleep(pace.first_s)
                elif i > 1 and pace.chat_token_s and sse:
                    await asyncio.sleep(pace.chat_token_s)
                yield item
                await asyncio.sleep(0)  # one event per write, as a live stream arrives

        return StreamingResponse(body(), media_type=media_type)


def _openai_error(fault: Fault) -> JSONResponse:
    status = fault.status or 500
    kinds = {
        401: ("invalid_request_error", "Incorrect API key provided: sk-****."),
        429: ("rate_limit_error", "Rate limit reached for gpt-4o-mini on requests per min."),
        500: ("server_error", "The server had an error while processing your request."),
    }
    kind, message = kinds.get(status, ("api_error", "Something went wrong."))
    if fault.code == "insufficient_quota":
        kind, message = "insufficient_quota", "You exceeded your current quota."
    body = {"error": {"message": message, "type": kind, "param": None, "code": fault.code}}
    headers = {"x-request-id": "req_fake", **fault.headers}
    return JSONResponse(body, status_code=status, headers=headers)


def _eleven_error(fault: Fault) -> JSONResponse:
    status = fault.status or 500
    message = {401: "Invalid API key", 429: "Too many concurrent requests."}.get(
        status, "Internal server error"
    )
    body = {"detail": {"status": fault.code or "error", "message": message}}
    return JSONResponse(body, status_code=status, headers=fault.headers)


def _chunk(model: str, delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    ]  # fmt: skip
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1764201600,
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": None,
    }


def _chat_events(model: str, step: Step, options: dict[str, Any] | None) -> list[bytes]:
    """The SSE events of one streamed completion, split like OpenAI splits them."""
    chunks = [_chunk(model, {"role": "assistant", "content": "" if step.text else None})]
    chunks += [_chunk(model, {"content": piece}) for piece in step.text]
    for i, (name, arguments) in enumerate(step.calls):
        first = {"index": i, "id": f"call_{i}_fake", "type": "function",
                 "function": {"name": name, "arguments": ""}}  # fmt: skip
        chunks.append(_chunk(model, {"tool_calls": [first]}))
        for k in range(0, len(arguments), 7):  # argument JSON arrives in small fragments
            piece = {"index": i, "function": {"arguments": arguments[k : k + 7]}}
            chunks.append(_chunk(model, {"tool_calls": [piece]}))
    chunks.append(_chunk(model, {}, "tool_calls" if step.calls else "stop"))
    if options and options.get("include_usage"):
        usage_chunk = _chunk(model, None)
        usage_chunk["usage"] = {
            "prompt_tokens": step.prompt_tokens,
            "completion_tokens": step.completion_tokens,
            "total_tokens": step.prompt_tokens + step.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": step.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        chunks.append(usage_chunk)
    events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
    return [*events, b"data: [DONE]\n\n"]


def _pcm_chunks(text: str, rate: int) -> list[bytes]:
    """A 440 Hz tone, 60 ms per character, in odd-sized chunks (as networks deliver them)."""
    t = np.arange(int(len(text) * 0.06 * rate)) / rate
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    return [pcm[i : i + 4_801] for i in range(0, len(pcm), 4_801)]


def wav_info(data: bytes) -> tuple[int, int, float]:
    """(rate, channels, seconds) of an uploaded WAV."""
    with wave.open(io.BytesIO(data)) as w:
        return w.getframerate(), w.getnchannels(), w.getnframes() / w.getframerate()


def main() -> None:
    """Serve the fake API standalone (benchmarks): ``python -m tests.fakecloud --port N``."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft", type=float, default=0.0, help="chat time to first token (s)")
    parser.add_argument("--token", type=float, default=0.0, help="chat time per token (s)")
    parser.add_argument("--tts-first", type=float, default=0.0, help="speech first byte (s)")
    args = parser.parse_args()
    fake = FakeCloud()
    fake.pace["chat"] = Pace(args.ttft, args.token)
    fake.pace["speech"] = fake.pace["el_tts"] = Pace(args.tts_first)
    fake.seen = _Forgetful()  # a benchmark makes thousands of requests
    words = REPLY.split(" ")
    fake.default_step = Step(text=[words[0], *(f" {w}" for w in words[1:])])
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="warning")


class _Forgetful(list):  # type: ignore[type-arg]
    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    main()
