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
import time
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)

SLOW_WRITE_S = 0.25


class Backpressure:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.congested = False
        self.dropped = 0  # token frames not sent to a congested client

    def drop(self, droppable: bool) -> bool:
        """Whether to skip this frame: a droppable one while the client is congested."""
        if droppable and self.congested:
            self.dropped += 1
            return True
        return False

    async def write(self, send: Awaitable[None]) -> bool:
        """Do one write; False: it waited ``timeout_s`` (the client stopped reading)."""
        started = time.monotonic()
        try:
            # not asyncio.wait_for: on 3.11 it can swallow a cancellation that arrives as the
            # write completes, and a cancelled turn would then run on
            async with asyncio.timeout(self.timeout_s):
                await send
        except TimeoutError:
            return False
        self.congested = time.monotonic() - started > SLOW_WRITE_S
        return True


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
