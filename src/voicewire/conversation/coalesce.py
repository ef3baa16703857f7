"""Token deltas that arrive close together go out as one ``llm_streaming`` frame.

Why: a frame costs the server about the same whatever its size (the WebSocket layer is a third
of a turn's CPU, docs/performance.md), and a model streams 20-100 tokens a second, faster than
anyone reads. The first delta of a burst goes at once (what the user sees first is not
delayed); deltas within ``window_s`` of the last frame sent wait and go together, at the end of
the window at the latest, and before any other frame, so the order of frames never changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from voicewire.conversation.tasks import TaskSet
from voicewire.protocol import LlmStreaming


class TokenCoalescer:
    def __init__(
        self,
        send: Callable[[LlmStreaming], Awaitable[None]],
        tasks: TaskSet,
        window_s: float,
    ) -> None:
        self._send = send
        self._tasks = tasks
        self.window_s = window_s
        self._uid = ""  # the utterance of the deltas waiting
        self._pending: list[str] = []
        self._sent_at = -1e9
        self._timer: asyncio.TimerHandle | None = None

    async def add(self, uid: str, delta: str) -> None:
        if self._pending:
            if uid == self._uid:
                self._pending.append(delta)
                return
            await self.flush()
        now = time.monotonic()
        if now - self._sent_at >= self.window_s:
            self._sent_at = now
            await self._send(LlmStreaming(utterance_id=uid, delta=delta))
            return
        self._uid, self._pending = uid, [delta]
        delay = self._sent_at + self.window_s - now
        self._timer = asyncio.get_running_loop().call_later(delay, self._due)

    def _due(self) -> None:
        self._timer = None
        self._tasks.create(self.flush(), "tokens")

    async def flush(self) -> None:
        """Send what waits (before any other frame goes out)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            delta, self._pending = "".join(self._pending), []
            self._sent_at = time.monotonic()
            await self._send(LlmStreaming(utterance_id=self._uid, delta=delta))

    def close(self) -> None:
        """The connection is gone: nothing more to send."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = []
