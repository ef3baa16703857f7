"""Admission and drain: who may open a session now, and how the server stops without cutting
a turn.

- **Admission.** A new session is refused at the handshake (HTTP 503 with ``Retry-After``)
  while the server drains, when ``max_sessions`` are connected (set, or derived from the
  resource monitor's capacity estimate once it has measured enough turns), or when the event
  loop lags (every session on it would suffer). Running sessions are never dropped to make
  room. ``/health/ready`` says the same to a load balancer.
- **Drain** (``SIGTERM``/``SIGINT``, see :class:`DrainingServer`): readiness turns 503 at once
  and new sessions are refused; the turns running or queued finish (up to ``drain_timeout_s``);
  every client is told (``session_closing``) and closed with 1001; the ledger's pending
  writes are flushed; then uvicorn stops and the process exits 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn

if TYPE_CHECKING:
    from voicewire.server.runtime import Runtime

log = logging.getLogger(__name__)

MIN_TURNS_FOR_ESTIMATE = 50  # below this, the capacity estimate is mostly start-up cost


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""
    retry_after_s: int = 0


class Admission:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.draining = False

    def session_cap(self) -> int | None:
        rt = self.runtime
        if rt.settings.max_sessions is not None:
            return rt.settings.max_sessions
        capacity = rt.capacity()
        # the estimate's CPU per turn is CPU since start over turns: until the sessions have
        # taken a turn each, it is mostly what opening them cost (a burst of connections),
        # and would refuse sessions the server can hold
        enough = max(MIN_TURNS_FOR_ESTIMATE, rt.metrics.connections_total)
        if capacity["turns_measured"] < enough or capacity["sessions"] is None:
            return None
        return max(int(capacity["sessions"]), 1)

    def check(self) -> Verdict:
        """May a new session start now?"""
        if self.draining:
            return Verdict(False, "the server is shutting down: connect to another one", 5)
        cap = self.session_cap()
        if cap is not None and self.runtime.store.connected() >= cap:
            return Verdict(False, f"the server is at capacity ({cap} sessions)", 5)
        lag = self.runtime.monitor.recent_loop_lag_ms()
        limit = self.runtime.settings.shed_loop_lag_ms
        if limit and lag > limit:
            return Verdict(False, f"the server is overloaded (event loop {lag:.0f} ms late)", 2)
        return Verdict(True)


async def drain(runtime: Runtime) -> None:
    """Finish what runs, tell every client, close them, flush the ledger."""
    admission = runtime.admission
    admission.draining = True
    started = time.monotonic()
    timeout = runtime.settings.drain_timeout_s
    conns = list(runtime.connections.values())
    busy = [c for c in conns if c.busy()]
    log.info("draining: %d sessions, %d with turns running", len(conns), len(busy))
    if busy:
        waits = [asyncio.ensure_future(c.conversation.settle()) for c in busy]
        _, pending = await asyncio.wait(waits, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("drain: %d sessions still busy after %g s", len(pending), timeout)
    for conn in list(runtime.connections.values()):
        with contextlib.suppress(Exception):
            await conn.close_for_shutdown()
    await runtime.flush()
    log.info("drained in %.1f s", time.monotonic() - started)


class DrainingServer(uvicorn.Server):
    """uvicorn, with the first SIGTERM/SIGINT draining the app before uvicorn stops (its own
    handling closes every WebSocket at once with 1012), and a second one exiting at once."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._drain is not None or self._loop is None:  # the second signal
            log.warning("second %s: exiting now", signal.Signals(sig).name)
            self.force_exit = True
            self.should_exit = True
            return
        log.info("%s: draining (a second one exits at once)", signal.Signals(sig).name)
        self._drain = self._loop.create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await drain(self.runtime)
        except Exception:
            log.exception("drain failed")
        self.should_exit = True
