"""A Python client for ``/ws/multimodal``: the terminal ``talk`` command, tests and benchmarks.

It speaks only through ``voicewire.protocol``, so it is also a reference for writing clients.
``Turn`` collects everything one utterance produced, with client-side arrival times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from voicewire.protocol import (
    INPUT_SAMPLE_RATE,
    Error,
    Init,
    ServerFrame,
    decode_audio_frame,
    parse_server_frame,
)


class RequestError(Exception):
    """The server answered a request with an ``error`` frame."""

    def __init__(self, frame: Error) -> None:
        super().__init__(f"{frame.code}: {frame.message}")
        self.frame = frame


@dataclass
class Received:
    """A frame and when it arrived, in ms since the client's reference time."""

    frame: ServerFrame
    at_ms: float
    audio: bytes = b""


@dataclass
class TurnResult:
    utterance_id: str
    frames: list[Received] = field(default_factory=list)
    sent_at: float = 0.0  # perf_counter() when the user's input ended

    def of_type(self, kind: str) -> list[ServerFrame]:
        return [r.frame for r in self.frames if r.frame.type == kind]

    def first(self, kind: str) -> ServerFrame | None:
        found = self.of_type(kind)
        return found[0] if found else None

    @property
    def audio(self) -> bytes:
        return b"".join(r.audio for r in self.frames if r.frame.type == "tts_chunk")

    @property
    def status(self) -> str | None:
        done = self.first("utterance_complete")
        return getattr(done, "status", None)

    @property
    def first_audio_ms(self) -> float | None:
        """Client-measured time from end of input to the first audio byte."""
        for r in self.frames:
            if r.frame.type == "tts_chunk":
                return r.at_ms
        return None


class Client:
    def __init__(self, ws: ClientConnection, init: Init) -> None:
        self.ws = ws
        self.init = init
        self.inbox: asyncio.Queue[Received | None] = asyncio.Queue()  # None: the socket closed
        self._ref_time = time.perf_counter()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, url: str, open_timeout: float = 60.0, api_key: str | None = None
    ) -> Client:
        """Open a session; ``api_key``: the server's key (or a client token), if it needs one."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        ws = await connect(
            url,
            max_size=None,
            open_timeout=open_timeout,
            compression=None,
            additional_headers=headers,
        )
        first = parse_server_frame(await asyncio.wait_for(ws.recv(), open_timeout))
        if not isinstance(first, Init):
            await ws.close()
            raise ConnectionError(f"expected init, got {first.type}: {first.model_dump()}")
        return cls(ws, first)

    @property
    def session_id(self) -> str:
        return self.init.session_id

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.ws:
                at = (time.perf_counter() - self._ref_time) * 1000
                if isinstance(message, bytes):
                    header, pcm = decode_audio_frame(message)
                    await self.inbox.put(Received(header, at, pcm))
                else:
                    await self.inbox.put(Received(parse_server_frame(message), at))
        self.inbox.put_nowait(None)  # whoever waits for a frame learns the socket is gone

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(payload))

    def mark(self, at: float | None = None) -> float:
        """Set the reference time for arrival times (end of the user's input); default now."""
        self._ref_time = time.perf_counter() if at is None else at
        return self._ref_time

    async def stream_audio(
        self, pcm: bytes, chunk_ms: int = 20, realtime: bool = True, silence_after_ms: int = 0
    ) -> float:
        """Send PCM 16 kHz like a microphone; return perf_counter() at the end of the speech."""
        step = INPUT_SAMPLE_RATE * chunk_ms // 1000 * 2
        start = time.perf_counter()
        sent = 0
        end_of_speech = start
        payload = pcm + b"\x00" * (INPUT_SAMPLE_RATE * silence_after_ms // 1000 * 2)
        for i in range(0, len(payload), step):
            if realtime:  # pace to the audio clock, as a microphone does
                delay = start + sent / 2 / INPUT_SAMPLE_RATE - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            chunk = payload[i : i + step]
            await self.ws.send(chunk)
            sent += len(chunk)
            if i + step >= len(pcm) and end_of_speech == start:
                end_of_speech = time.perf_counter()
        return end_of_speech

    async def next_frame(self, timeout: float = 60.0) -> Received:
        """The next frame; ConnectionError once the socket has closed and all were read."""
        received = await asyncio.wait_for(self.inbox.get(), timeout)
        if received is None:
            self.inbox.put_nowait(None)  # every later call fails the same way
            code, reason = self.ws.close_code, self.ws.close_reason
            raise ConnectionError(f"the server closed the connection ({code} {reason or ''})")
        return received

    async def expect(self, kind: str, timeout: float = 60.0) -> ServerFrame:
        """Wait for the next frame of ``kind``, skipping others."""
        return (await self._expect(kind, timeout)).frame

    async def _expect(self, kind: str, timeout: float) -> Received:
        """Next frame of ``kind``; an ``error`` frame of no utterance raises instead."""
        while True:
            received = await self.next_frame(timeout)
            frame = received.frame
            if frame.type == kind:
                return received
            if isinstance(frame, Error) and frame.utterance_id is None:
                raise RequestError(frame)

    async def collect(self, utterance_id: str | None = None, timeout: float = 120.0) -> TurnResult:
        """Collect frames until an ``utterance_complete`` (of ``utterance_id`` if given)."""
        result = TurnResult(utterance_id=utterance_id or "", sent_at=self._ref_time)
        deadline = time.perf_counter() + timeout
        while True:
            received = await self.next_frame(max(0.001, deadline - time.perf_counter()))
            frame = received.frame
            if utterance_id is None and frame.utterance_id and frame.type != "ack":
                utterance_id = result.utterance_id = frame.utterance_id
            if frame.utterance_id == utterance_id or frame.utterance_id is None:
                result.frames.append(received)
            if frame.type == "utterance_complete" and frame.utterance_id == utterance_id:
                return result

    async def ask(self, text: str, timeout: float = 120.0) -> TurnResult:
        """Send typed text; collect the whole utterance (its ack first)."""
        self.mark()
        await self.send_json({"type": "user_text", "text": text})
        return await self._collect_acked(timeout)

    async def say(self, pcm: bytes, realtime: bool = True, timeout: float = 120.0) -> TurnResult:
        """Push-to-talk: stream PCM 16 kHz, commit, collect the utterance.

        Arrival times count from the commit, the moment the user's input ended.
        """
        await self.send_json({"type": "session_update", "turn_detection": "manual"})
        await self.expect("ack", timeout)
        await self.stream_audio(pcm, realtime=realtime)
        self.mark()
        await self.send_json({"type": "audio_commit"})
        return await self._collect_acked(timeout)

    async def _collect_acked(self, timeout: float) -> TurnResult:
        ack = await self._expect("ack", timeout)
        result = await self.collect(ack.frame.utterance_id, timeout)
        result.frames.insert(0, ack)
        return result

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._reader
        await self.ws.close()
