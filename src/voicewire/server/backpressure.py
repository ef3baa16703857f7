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
import time
from collections.abc import Awaitable

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
