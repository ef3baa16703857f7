"""Back-pressure: a client that stops reading must not hold a turn, or memory, for ever.

Writes to a socket wait while its send buffer is full (the kernel's and the WebSocket
library's, a few hundred KB at most), so the buffer is bounded already; what is not bounded
is how long a turn waits. Here: a write that takes longer than ``SLOW_WRITE_S`` marks the
client congested, and while it is, token frames (``llm_streaming``; ``llm_complete`` and
``assistant_text`` carry the same words) are dropped rather than queued behind the audio; a
write that waits ``timeout_s`` gives the client up: the connection is closed with 1008 and
the session's turns are cancelled like any other disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)

SLOW_WRITE_S = 0.25
EXPIRED = -1.0  # a write past its deadline, cancelled here


class Backpressure:
    """One connection's writes: congestion, and a deadline for each write.

    The deadline is one timer per connection, re-armed only when it fires while a write is in
    flight, instead of a timeout armed and cancelled around every write: a turn writes a few
    dozen frames, and a timer each was a measurable share of the send path."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.congested = False
        self.dropped = 0  # token frames not sent to a congested client
        # writing task -> when its write began, or EXPIRED once this class cancelled it
        self._writes: dict[asyncio.Task[Any], float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def drop(self, droppable: bool) -> bool:
        """Whether to skip this frame: a droppable one while the client is congested."""
        if droppable and self.congested:
            self.dropped += 1
            return True
        return False

    async def write(self, send: Awaitable[None]) -> bool:
        """Do one write; False: it waited ``timeout_s`` (the client stopped reading)."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._writes[task] = started
        if self._timer is None:
            self._timer = loop.call_at(started + self.timeout_s, self._check)
        cancelling = task.cancelling()
        try:
            await send
        except asyncio.CancelledError:
            # ours, and no other cancellation pending: a timeout (as asyncio.timeout decides)
            if self._writes[task] == EXPIRED and task.uncancel() <= cancelling:
                return False
            raise
        finally:
            del self._writes[task]
        self.congested = loop.time() - started > SLOW_WRITE_S
        return True

    def _check(self) -> None:
        """The timer: cancel writes past the deadline; re-arm for the oldest one left."""
        self._timer = None
        if not self._writes:
            return  # nothing in flight: the next write arms it again
        loop = asyncio.get_running_loop()
        now = loop.time()
        late = [t for t, at in self._writes.items() if at != EXPIRED and now - at >= self.timeout_s]
        for task in late:
            self._writes[task] = EXPIRED
            task.cancel()
        if pending := [at for at in self._writes.values() if at != EXPIRED]:
            self._timer = loop.call_at(min(pending) + self.timeout_s, self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def give_up(
    ws: Any, reader: asyncio.Task[Any] | None, session_id: str, after_s: float
) -> None:
    """Close a client that stopped reading (1008, if the close frame still fits) and stop its
    reader task, which waits for frames that will not come; the reader's cleanup then
    cancels the session's turns like any disconnect."""
    log.warning("session %s: the client has not read for %g s; closing", session_id, after_s)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code=1008, reason="client not reading"), 1.0)
    if reader is not None and reader is not asyncio.current_task():
        reader.cancel()
